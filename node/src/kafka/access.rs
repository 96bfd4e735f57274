//! Who may do what: each handler asks the model's authorizer
//! (`runnel_model::acl`, the rule lives there) with the connection's
//! principal and host, against the ACLs of the committed metadata. Every
//! connection is `User:ANONYMOUS` (no listener authenticates yet, as on a
//! Kafka PLAINTEXT listener); the host is the client's address.
//!
//! Kafka's errors: TOPIC_AUTHORIZATION_FAILED (29) per topic or partition,
//! GROUP_AUTHORIZATION_FAILED (30), CLUSTER_AUTHORIZATION_FAILED (31).

use crate::runtime::node::ClusterView;
use crate::runtime::settings::NodeSettings;
use runnel_model::acl::{
    AclStore, Authorizer, Operation, Requester, ResourceType, ANONYMOUS, CLUSTER_RESOURCE_NAME,
};

pub const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
pub const GROUP_AUTHORIZATION_FAILED: i16 = 30;
pub const CLUSTER_AUTHORIZATION_FAILED: i16 = 31;

/// One request's view of the authorizer: the ACLs as of one metadata
/// snapshot and the connection asking.
pub struct Access<'a> {
    authorizer: Authorizer,
    acls: &'a AclStore,
    /// The client's IP address, as ACL hosts name it (no leading `/`).
    host: &'a str,
}

impl<'a> Access<'a> {
    /// `client_host` as the front end keeps it (`/127.0.0.1`, the form
    /// DescribeGroups shows).
    pub fn new(settings: &NodeSettings, view: &'a ClusterView, client_host: &'a str) -> Self {
        Access {
            authorizer: settings.authorizer,
            acls: &view.image.acls,
            host: client_host.trim_start_matches('/'),
        }
    }

    fn who(&self) -> Requester<'_> {
        Requester {
            principal: ANONYMOUS,
            host: self.host,
        }
    }

    pub fn topic(&self, operation: Operation, name: &str) -> bool {
        self.authorizer
            .authorize(self.acls, self.who(), operation, ResourceType::Topic, name)
    }

    pub fn group(&self, operation: Operation, name: &str) -> bool {
        self.authorizer
            .authorize(self.acls, self.who(), operation, ResourceType::Group, name)
    }

    pub fn cluster(&self, operation: Operation) -> bool {
        self.authorizer.authorize(
            self.acls,
            self.who(),
            operation,
            ResourceType::Cluster,
            CLUSTER_RESOURCE_NAME,
        )
    }

    /// KIP-430's authorized operations of a resource (a bit per operation).
    pub fn operations(&self, resource_type: ResourceType, name: &str) -> i32 {
        self.authorizer
            .authorized_operations(self.acls, self.who(), resource_type, name)
    }

    /// KIP-430's authorized operations of the cluster.
    pub fn cluster_operations(&self) -> i32 {
        self.operations(ResourceType::Cluster, CLUSTER_RESOURCE_NAME)
    }
}
