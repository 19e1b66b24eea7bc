//! The actor plane: a session per connection (owned by the connection's
//! task), a home per online user (a record of the node's home table), and a
//! conversation actor per active conversation, supervised per node
//! (docs/decisions/0004).

mod conversation;
mod directory;
pub mod metrics;
mod outbox;
mod session;
mod user;

pub use conversation::{ConversationMsg, members_for, members_of};
pub use directory::{Attachment, Directory};
pub use outbox::{Outbound, Outbox, OutboxReceiver, Received};
pub use session::{Session, TOKEN_EXPIRED};
pub use user::{Applied, Homes, Notice};
