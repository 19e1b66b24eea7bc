//! The actor plane: a session actor per connection, a user actor per online
//! user, a conversation actor per active conversation, all supervised per node.

mod conversation;
mod directory;
pub mod metrics;
mod outbox;
mod session;
mod user;

pub use conversation::{ConversationMsg, members_for, members_of};
pub use directory::Directory;
pub use outbox::{Outbound, Outbox, OutboxReceiver};
pub use session::{SessionActor, SessionArgs, SessionMsg};
pub use user::UserMsg;
