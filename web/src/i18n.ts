// Every UI string in Simplified Chinese and English. The browser's language
// picks the default; the choice made in the page is kept in localStorage.

export type Lang = "zh-CN" | "en";

const en = {
  "app.title": "Chorus",
  "login.heading": "Sign in to Chorus",
  "login.account": "Account",
  "login.password": "Password",
  "login.remember": "Remember me on this computer",
  "login.submit": "Sign in",
  "login.busy": "Signing in…",
  "login.error.UNAUTHENTICATED": "Wrong account or password.",
  "login.error.RATE_LIMITED": "Too many attempts. {message}",
  "login.error.INVALID": "That account name is not valid.",
  "login.error.DISCONNECTED": "Cannot reach the server. Check your network and try again.",
  "login.error.other": "Sign-in failed: {message}",
  "lang.switch": "中文",
  "main.logout": "Sign out",
  "main.offline": "Connection lost. Reconnecting…",
  "main.syncing": "Catching up…",
  "main.ended.CONFLICT": "You signed in on another browser, so this one was signed out.",
  "main.ended.other": "Your session ended: {reason}",
  "main.ended.again": "Sign in again",
  "list.heading": "Conversations",
  "list.empty": "No conversations yet.",
  "list.new": "Chat with (account)",
  "list.new.go": "Open",
  "list.new.notfound": "No user {account}.",
  "list.unread": "{count} unread",
  "chat.none": "Pick a conversation.",
  "chat.placeholder": "Write a message",
  "chat.send": "Send",
  "chat.older": "Load earlier messages",
  "chat.read": "Read",
  "chat.unread": "Unread",
  "chat.sending": "Sending…",
  "chat.failed": "Not sent: {message}",
  "chat.me": "Me",
  "chat.recall": "Recall",
  "chat.recalled.me": "You recalled a message",
  "chat.recalled.other": "{name} recalled a message",
  "chat.recall.failed": "Not recalled: {message}",
  "sign.must": "Recipients must sign",
  "sign.pending": "To sign",
  "sign.sign": "Sign",
  "sign.password": "Your password",
  "sign.signed": "Signed",
  "sign.failed": "Not signed: {message}",
  "sign.status": "Signed by {signed} of {count}",
  "sign.refresh": "Who signed",
  "sign.remind": "Remind",
  "sign.reminded": "Reminded {count}",
  "sign.reminder": "{name} asks you to sign a message",
  "list.mentioned": "[Someone @you]",
  "group.settings": "Group settings",
  "group.conversation.settings": "Conversation settings",
  "group.dnd": "Do not disturb",
  "group.rename": "Rename",
  "group.announcement": "Announcement",
  "group.announce": "Pin announcement",
  "group.announcement.reads": "read by {count}",
  "group.mute.all": "Mute everyone but the owner and admins",
  "group.muted.all": "The group is muted: only its owner and admins may send.",
  "group.muted.me": "You are muted in this group.",
  "group.muted": "muted",
  "group.mute": "Mute",
  "group.unmute": "Unmute",
  "group.owner": "owner",
  "group.admin": "admin",
  "group.admin.add": "Make admin",
  "group.admin.remove": "Remove admin",
};

export type Key = keyof typeof en;

const zh: Record<Key, string> = {
  "app.title": "Chorus",
  "login.heading": "登录 Chorus",
  "login.account": "账号",
  "login.password": "密码",
  "login.remember": "在这台电脑上记住我",
  "login.submit": "登录",
  "login.busy": "正在登录…",
  "login.error.UNAUTHENTICATED": "账号或密码错误。",
  "login.error.RATE_LIMITED": "尝试次数过多。{message}",
  "login.error.INVALID": "账号格式不正确。",
  "login.error.DISCONNECTED": "无法连接服务器，请检查网络后重试。",
  "login.error.other": "登录失败：{message}",
  "lang.switch": "English",
  "main.logout": "退出登录",
  "main.offline": "连接已断开，正在重新连接…",
  "main.syncing": "正在同步…",
  "main.ended.CONFLICT": "您已在另一个浏览器登录，此处已退出。",
  "main.ended.other": "会话已结束：{reason}",
  "main.ended.again": "重新登录",
  "list.heading": "会话",
  "list.empty": "还没有会话。",
  "list.new": "发起聊天（账号）",
  "list.new.go": "打开",
  "list.new.notfound": "没有用户 {account}。",
  "list.unread": "{count} 条未读",
  "chat.none": "请选择一个会话。",
  "chat.placeholder": "输入消息",
  "chat.send": "发送",
  "chat.older": "加载更早的消息",
  "chat.read": "已读",
  "chat.unread": "未读",
  "chat.sending": "发送中…",
  "chat.failed": "发送失败：{message}",
  "chat.me": "我",
  "chat.recall": "撤回",
  "chat.recalled.me": "你撤回了一条消息",
  "chat.recalled.other": "{name} 撤回了一条消息",
  "chat.recall.failed": "撤回失败：{message}",
  "sign.must": "需要签收",
  "sign.pending": "待签收",
  "sign.sign": "签收",
  "sign.password": "输入密码签收",
  "sign.signed": "已签收",
  "sign.failed": "签收失败：{message}",
  "sign.status": "{count} 人中 {signed} 人已签收",
  "sign.refresh": "查看签收",
  "sign.remind": "提醒签收",
  "sign.reminded": "已提醒 {count} 人",
  "sign.reminder": "{name} 提醒你签收一条消息",
  "list.mentioned": "[有人@我]",
  "group.settings": "群设置",
  "group.conversation.settings": "会话设置",
  "group.dnd": "消息免打扰",
  "group.rename": "修改群名",
  "group.announcement": "群公告",
  "group.announce": "发布群公告",
  "group.announcement.reads": "{count} 人已读",
  "group.mute.all": "全员禁言（群主和管理员除外）",
  "group.muted.all": "全员禁言中：只有群主和管理员可以发言。",
  "group.muted.me": "你已被禁言。",
  "group.muted": "已禁言",
  "group.mute": "禁言",
  "group.unmute": "解除禁言",
  "group.owner": "群主",
  "group.admin": "管理员",
  "group.admin.add": "设为管理员",
  "group.admin.remove": "取消管理员",
};

const tables: Record<Lang, Record<Key, string>> = { en, "zh-CN": zh };

/** Returns the language of the browser's preferences: Chinese or English. */
export function browserLang(languages: readonly string[]): Lang {
  for (const l of languages) {
    const lower = l.toLowerCase();
    if (lower.startsWith("zh")) return "zh-CN";
    if (lower.startsWith("en")) return "en";
  }
  return "en";
}

export function translate(lang: Lang, key: Key, params: Record<string, string | number> = {}): string {
  return tables[lang][key].replace(/\{(\w+)\}/g, (_, name: string) => String(params[name] ?? ""));
}

export const allKeys = Object.keys(en) as Key[];
export const languages = Object.keys(tables) as Lang[];
export function table(lang: Lang): Record<Key, string> {
  return tables[lang];
}
