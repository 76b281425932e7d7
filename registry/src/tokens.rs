//! Expired ACL tokens are deleted by whichever node leads, as Consul's leader reaps them: an
//! expired token is refused from the moment it expires (`AclToken::expired`), and this frees
//! its accessor and secret, and drops it from listings, soon after.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::node::Node;
use crate::types::Command;

/// How often the leader looks.
const TICK: Duration = Duration::from_secs(10);

/// Run until `stop`.
pub async fn reap(node: Arc<Node>, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(TICK) => {}
            _ = stop.cancelled() => return,
        }
        if !node.is_leader() {
            continue;
        }
        let now = lucid_core::unix_now();
        let expired: Vec<String> = match node.state.acl_tokens() {
            Ok(tokens) => tokens
                .into_iter()
                .filter(|t| t.expired(now))
                .map(|t| t.accessor_id)
                .collect(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read ACL tokens");
                continue;
            }
        };
        for accessor_id in expired {
            let cmd = Command::AclTokenDelete {
                accessor_id: accessor_id.clone(),
            };
            match node.write(cmd).await {
                Ok(_) => {
                    tracing::info!(accessor = %accessor_id, "reaped an expired ACL token");
                    metrics::counter!("lucid_acl_tokens_reaped_total").increment(1);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot reap an expired ACL token yet; will retry");
                    break;
                }
            }
        }
    }
}
