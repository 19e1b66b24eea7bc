//! The org directory's pure parts: the department tree with member counts,
//! and contact matching (name, account prefix, pinyin initials).

use std::collections::HashMap;

use pinyin::ToPinyin;
use serde::Serialize;

use super::{DepartmentRecord, UserRecord};

/// A department and its subtree, as `GET /api/v1/departments/tree` returns it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DepartmentNode {
    pub department_id: u64,
    pub parent_id: u64,
    pub name: String,
    pub order: i32,
    /// Users holding a post in this department.
    pub member_count: u64,
    /// Posts held in this department and every department below it.
    pub total_count: u64,
    /// Online users holding a post in this department, cluster-wide.
    pub online_count: u64,
    /// Online posts in this department and every department below it.
    pub online_total: u64,
    pub children: Vec<DepartmentNode>,
}

/// Fills in the online counts of a tree from per-department counts;
/// returns the online total of the forest.
pub fn fill_online(tree: &mut [DepartmentNode], online: &HashMap<u64, u64>) -> u64 {
    let mut sum = 0;
    for node in tree {
        node.online_count = online.get(&node.department_id).copied().unwrap_or(0);
        node.online_total = node.online_count + fill_online(&mut node.children, online);
        sum += node.online_total;
    }
    sum
}

/// Builds the forest of departments under the root (parent 0), children
/// ordered by `order` then name. `members` gives the direct member count of
/// each department id. A department whose parent is missing hangs under the
/// root rather than vanish.
pub fn build_tree(
    departments: &[DepartmentRecord],
    members: &HashMap<u64, u64>,
) -> Vec<DepartmentNode> {
    let known: std::collections::HashSet<u64> =
        departments.iter().map(|d| d.department_id).collect();
    let mut children: HashMap<u64, Vec<&DepartmentRecord>> = HashMap::new();
    for department in departments {
        let parent = if known.contains(&department.parent_id) {
            department.parent_id
        } else {
            0
        };
        children.entry(parent).or_default().push(department);
    }
    for siblings in children.values_mut() {
        siblings.sort_by(|a, b| {
            (a.order, &a.name, a.department_id).cmp(&(b.order, &b.name, b.department_id))
        });
    }
    // The state machine refuses cycles; `seen` keeps a corrupt store from
    // recursing forever.
    let mut seen = std::collections::HashSet::new();
    subtree(0, &children, members, &mut seen)
}

fn subtree(
    parent: u64,
    children: &HashMap<u64, Vec<&DepartmentRecord>>,
    members: &HashMap<u64, u64>,
    seen: &mut std::collections::HashSet<u64>,
) -> Vec<DepartmentNode> {
    let Some(list) = children.get(&parent) else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(list.len());
    for department in list {
        if !seen.insert(department.department_id) {
            continue;
        }
        let kids = subtree(department.department_id, children, members, seen);
        let member_count = members.get(&department.department_id).copied().unwrap_or(0);
        let total_count = member_count + kids.iter().map(|k| k.total_count).sum::<u64>();
        out.push(DepartmentNode {
            department_id: department.department_id,
            parent_id: department.parent_id,
            name: department.name.clone(),
            order: department.order,
            member_count,
            total_count,
            online_count: 0,
            online_total: 0,
            children: kids,
        });
    }
    out
}

/// Returns the initials of a name in lowercase: the first letter of the
/// pinyin of each Chinese character and of each Latin word ("张伟" → "zw",
/// "Alice Wang" → "aw").
pub fn initials(name: &str) -> String {
    let mut out = String::new();
    let mut in_word = false;
    for (c, pinyin) in name.chars().zip(name.to_pinyin()) {
        if let Some(pinyin) = pinyin {
            out.push_str(pinyin.first_letter());
            in_word = false;
        } else if c.is_alphanumeric() {
            if !in_word {
                out.extend(c.to_lowercase());
            }
            in_word = true;
        } else {
            in_word = false;
        }
    }
    out
}

/// Tells whether a user matches a contact query: a case-insensitive
/// substring of the display name, a prefix of the account, or a prefix of
/// the name's initials.
pub fn matches(user: &UserRecord, query: &str) -> bool {
    let query = query.trim().to_lowercase();
    if query.is_empty() {
        return false;
    }
    user.display_name.to_lowercase().contains(&query)
        || user.account.to_lowercase().starts_with(&query)
        || (query.chars().all(|c| c.is_ascii_alphabetic())
            && initials(&user.display_name).starts_with(&query))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dept(id: u64, parent: u64, name: &str, order: i32) -> DepartmentRecord {
        DepartmentRecord {
            department_id: id,
            parent_id: parent,
            name: name.into(),
            order,
            created_at_ms: 0,
        }
    }

    #[test]
    fn tree_orders_children_and_sums_counts() {
        let departments = [
            dept(1, 0, "HQ", 0),
            dept(2, 1, "Sales", 1),
            dept(3, 1, "Engineering", 1),
            dept(4, 1, "Board", 0),
            dept(5, 3, "Platform", 0),
            dept(6, 5, "Storage", 0),
            dept(7, 99, "Orphan", 0),
        ];
        let members = HashMap::from([(1, 1), (3, 2), (6, 3), (2, 1)]);
        let tree = build_tree(&departments, &members);
        assert_eq!(
            tree.iter().map(|n| n.name.as_str()).collect::<Vec<_>>(),
            ["HQ", "Orphan"]
        );
        let hq = &tree[0];
        assert_eq!(
            hq.children
                .iter()
                .map(|n| n.name.as_str())
                .collect::<Vec<_>>(),
            ["Board", "Engineering", "Sales"],
            "by order, then name"
        );
        assert_eq!((hq.member_count, hq.total_count), (1, 7));
        let engineering = &hq.children[1];
        assert_eq!((engineering.member_count, engineering.total_count), (2, 5));
        assert_eq!(engineering.children[0].children[0].total_count, 3);
    }

    #[test]
    fn initials_of_chinese_and_latin_names() {
        assert_eq!(initials("张伟"), "zw");
        assert_eq!(initials("Alice Wang"), "aw");
        assert_eq!(initials("李 Lei"), "ll");
        assert_eq!(initials(""), "");
    }

    #[test]
    fn contact_matching() {
        let user = UserRecord {
            account: "zhangwei".into(),
            display_name: "张伟".into(),
            ..Default::default()
        };
        assert!(matches(&user, "zw"));
        assert!(matches(&user, "ZHANG"));
        assert!(matches(&user, "伟"));
        assert!(!matches(&user, "wei"), "account is matched by prefix only");
        assert!(!matches(&user, " "));
    }
}
