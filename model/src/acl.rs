//! Access control lists and the authorizer's decision (Kafka's
//! `StandardAuthorizer`, KIP-140 for the admin APIs, KIP-290 for prefixed
//! patterns).
//!
//! An ACL binds a resource pattern (a topic, group, the cluster, ...; a
//! literal name, the literal wildcard `*`, or a name prefix) to an entry: a
//! principal (`User:alice`, or `User:*` for every one), a host (or `*`), an
//! operation and ALLOW or DENY. The set of ACLs is cluster metadata: the
//! controller decides its changes (`ControllerRequest::CreateAcls` /
//! `DeleteAcls`) and every broker authorizes against its image.
//!
//! The decision, in Kafka's order:
//! 1. the ACLs that match the resource are the literal ones of its name, the
//!    literal wildcard ones of its type and the prefixed ones whose prefix
//!    starts its name;
//! 2. if none matches (whatever their principal, host or operation), the
//!    answer is `allow.everyone.if.no.acl.found`;
//! 3. a matching DENY for the principal (or `User:*`), the host (or `*`) and
//!    the operation (or ALL) denies, whatever allows it;
//! 4. otherwise a matching ALLOW of the operation, of ALL, or of an
//!    operation that implies it (READ, WRITE, DELETE and ALTER imply
//!    DESCRIBE; ALTER_CONFIGS implies DESCRIBE_CONFIGS) allows;
//! 5. otherwise denied.
//!
//! Pure: no clock, no I/O; the node passes the principal and host of the
//! connection.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

/// The only name of the cluster resource (Kafka's `kafka-cluster`).
pub const CLUSTER_RESOURCE_NAME: &str = "kafka-cluster";
/// The literal name that matches every resource of its type.
pub const WILDCARD: &str = "*";
/// Every principal: Runnel has no authentication, so each connection is
/// `User:ANONYMOUS`, as on a Kafka PLAINTEXT listener.
pub const ANONYMOUS: &str = "User:ANONYMOUS";
/// ACLs a cluster may hold (Runnel's limit; Kafka has none): each
/// broker holds all of them and a check walks those of one resource.
pub const ACLS_MAX: usize = 65_536;
/// Filters one DeleteAcls request may carry (Runnel's limit; each is
/// matched against every ACL on the controller's loop).
pub const ACL_FILTERS_MAX: usize = 1_024;

/// Kafka's resource types (wire codes); UNKNOWN (0) and ANY (1) are not
/// resources.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ResourceType {
    Topic,
    Group,
    Cluster,
    TransactionalId,
    DelegationToken,
    User,
}

impl ResourceType {
    pub fn code(self) -> i8 {
        match self {
            ResourceType::Topic => 2,
            ResourceType::Group => 3,
            ResourceType::Cluster => 4,
            ResourceType::TransactionalId => 5,
            ResourceType::DelegationToken => 6,
            ResourceType::User => 7,
        }
    }

    pub fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            2 => ResourceType::Topic,
            3 => ResourceType::Group,
            4 => ResourceType::Cluster,
            5 => ResourceType::TransactionalId,
            6 => ResourceType::DelegationToken,
            7 => ResourceType::User,
            _ => return None,
        })
    }

    /// The operations a resource of this type has (Kafka's
    /// `AclEntry.supportedOperations`), which KIP-430's authorized
    /// operations report.
    pub fn operations(self) -> &'static [Operation] {
        use Operation::*;
        match self {
            ResourceType::Topic => &[
                Read,
                Write,
                Create,
                Delete,
                Alter,
                Describe,
                DescribeConfigs,
                AlterConfigs,
            ],
            ResourceType::Group => &[Read, Describe, Delete],
            ResourceType::Cluster => &[
                Create,
                ClusterAction,
                DescribeConfigs,
                AlterConfigs,
                IdempotentWrite,
                Alter,
                Describe,
            ],
            ResourceType::TransactionalId => &[Describe, Write],
            ResourceType::DelegationToken => &[Describe],
            ResourceType::User => &[CreateTokens, DescribeTokens],
        }
    }
}

/// LITERAL (3) or PREFIXED (4); ANY (1) and MATCH (2) exist only in filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PatternType {
    Literal,
    Prefixed,
}

impl PatternType {
    pub fn code(self) -> i8 {
        match self {
            PatternType::Literal => 3,
            PatternType::Prefixed => 4,
        }
    }
}

/// Kafka's ACL operations (wire codes); ANY (1) exists only in filters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Operation {
    All,
    Read,
    Write,
    Create,
    Delete,
    Alter,
    Describe,
    ClusterAction,
    DescribeConfigs,
    AlterConfigs,
    IdempotentWrite,
    CreateTokens,
    DescribeTokens,
}

impl Operation {
    pub fn code(self) -> i8 {
        match self {
            Operation::All => 2,
            Operation::Read => 3,
            Operation::Write => 4,
            Operation::Create => 5,
            Operation::Delete => 6,
            Operation::Alter => 7,
            Operation::Describe => 8,
            Operation::ClusterAction => 9,
            Operation::DescribeConfigs => 10,
            Operation::AlterConfigs => 11,
            Operation::IdempotentWrite => 12,
            Operation::CreateTokens => 13,
            Operation::DescribeTokens => 14,
        }
    }

    pub fn from_code(code: i8) -> Option<Self> {
        Some(match code {
            2 => Operation::All,
            3 => Operation::Read,
            4 => Operation::Write,
            5 => Operation::Create,
            6 => Operation::Delete,
            7 => Operation::Alter,
            8 => Operation::Describe,
            9 => Operation::ClusterAction,
            10 => Operation::DescribeConfigs,
            11 => Operation::AlterConfigs,
            12 => Operation::IdempotentWrite,
            13 => Operation::CreateTokens,
            14 => Operation::DescribeTokens,
            _ => return None,
        })
    }

    /// The operations whose ALLOW also allows this one.
    fn implied_by(self) -> &'static [Operation] {
        use Operation::*;
        match self {
            Describe => &[Describe, Read, Write, Delete, Alter],
            DescribeConfigs => &[DescribeConfigs, AlterConfigs],
            Read => &[Read],
            Write => &[Write],
            Create => &[Create],
            Delete => &[Delete],
            Alter => &[Alter],
            ClusterAction => &[ClusterAction],
            AlterConfigs => &[AlterConfigs],
            IdempotentWrite => &[IdempotentWrite],
            CreateTokens => &[CreateTokens],
            DescribeTokens => &[DescribeTokens],
            All => &[],
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Permission {
    Deny,
    Allow,
}

impl Permission {
    pub fn code(self) -> i8 {
        match self {
            Permission::Deny => 2,
            Permission::Allow => 3,
        }
    }
}

/// The resource side of an ACL.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ResourcePattern {
    pub resource_type: ResourceType,
    pub pattern_type: PatternType,
    pub name: String,
}

/// Who may (or may not) do what, from where.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclEntry {
    pub principal: String,
    pub host: String,
    pub operation: Operation,
    pub permission: Permission,
}

/// One ACL (Kafka's `AclBinding`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclBinding {
    pub pattern: ResourcePattern,
    pub entry: AclEntry,
}

impl AclBinding {
    /// An ACL from CreateAcls' wire fields, validated as Kafka's
    /// `AclControlManager.validateNewAcl` and `AclApis` do; the error is
    /// Kafka's INVALID_REQUEST message.
    pub fn from_wire(
        resource_type: i8,
        name: &str,
        pattern_type: i8,
        principal: &str,
        host: &str,
        operation: i8,
        permission: i8,
    ) -> Result<AclBinding, String> {
        let resource_type = ResourceType::from_code(resource_type)
            .ok_or_else(|| format!("Invalid resourceType {resource_type}"))?;
        let pattern_type = match pattern_type {
            3 => PatternType::Literal,
            4 => PatternType::Prefixed,
            other => return Err(format!("Invalid patternType {other}")),
        };
        let operation = Operation::from_code(operation)
            .ok_or_else(|| format!("Invalid operation {operation}"))?;
        let permission = match permission {
            2 => Permission::Deny,
            3 => Permission::Allow,
            other => return Err(format!("Invalid permissionType {other}")),
        };
        if name.is_empty() {
            return Err("Resource name should not be empty".into());
        }
        if resource_type == ResourceType::Cluster && name != CLUSTER_RESOURCE_NAME {
            return Err(format!(
                "The only valid name for the CLUSTER resource is {CLUSTER_RESOURCE_NAME}"
            ));
        }
        if !principal.contains(':') {
            return Err(format!(
                "Could not parse principal from `{principal}` (no colon is present separating \
                 the principal type from the principal name)"
            ));
        }
        Ok(AclBinding {
            pattern: ResourcePattern {
                resource_type,
                pattern_type,
                name: name.to_string(),
            },
            entry: AclEntry {
                principal: principal.to_string(),
                host: host.to_string(),
                operation,
                permission,
            },
        })
    }

    /// An upper bound of its encoded size (for the controller's decision
    /// size check).
    pub fn size_bound(&self) -> usize {
        64 + self.pattern.name.len() + self.entry.principal.len() + self.entry.host.len()
    }
}

/// Which pattern types a filter selects.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum PatternFilter {
    /// ANY (1): every pattern whose name equals the filter's (or any name).
    Any,
    /// MATCH (2): every pattern that would apply to a resource of the
    /// filter's name: its literal name, the wildcard, and the prefixes of it.
    Match,
    Exactly(PatternType),
}

/// DescribeAcls' and DeleteAcls' filter (Kafka's `AclBindingFilter`): a
/// None field matches anything.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclFilter {
    pub resource_type: Option<ResourceType>,
    pub name: Option<String>,
    pub pattern: PatternFilter,
    pub principal: Option<String>,
    pub host: Option<String>,
    pub operation: Option<Operation>,
    pub permission: Option<Permission>,
}

impl AclFilter {
    /// A filter from the wire; UNKNOWN (0) or an out-of-range code in any
    /// field is INVALID_REQUEST, as Kafka answers.
    #[allow(clippy::too_many_arguments)]
    pub fn from_wire(
        resource_type: i8,
        name: Option<&str>,
        pattern_type: i8,
        principal: Option<&str>,
        host: Option<&str>,
        operation: i8,
        permission: i8,
    ) -> Result<AclFilter, String> {
        let resource_type = match resource_type {
            1 => None,
            code => Some(
                ResourceType::from_code(code)
                    .ok_or_else(|| format!("Invalid resourceType {code}"))?,
            ),
        };
        let pattern = match pattern_type {
            1 => PatternFilter::Any,
            2 => PatternFilter::Match,
            3 => PatternFilter::Exactly(PatternType::Literal),
            4 => PatternFilter::Exactly(PatternType::Prefixed),
            other => return Err(format!("Invalid patternType {other}")),
        };
        let operation = match operation {
            1 => None,
            code => Some(
                Operation::from_code(code).ok_or_else(|| format!("Invalid operation {code}"))?,
            ),
        };
        let permission = match permission {
            1 => None,
            2 => Some(Permission::Deny),
            3 => Some(Permission::Allow),
            other => return Err(format!("Invalid permissionType {other}")),
        };
        Ok(AclFilter {
            resource_type,
            name: name.map(str::to_string),
            pattern,
            principal: principal.map(str::to_string),
            host: host.map(str::to_string),
            operation,
            permission,
        })
    }

    pub fn matches(&self, acl: &AclBinding) -> bool {
        self.matches_pattern(&acl.pattern) && self.matches_entry(&acl.entry)
    }

    fn matches_pattern(&self, p: &ResourcePattern) -> bool {
        if self.resource_type.is_some_and(|t| t != p.resource_type) {
            return false;
        }
        match (&self.pattern, &self.name) {
            (PatternFilter::Exactly(t), _) if *t != p.pattern_type => false,
            (_, None) => true,
            (PatternFilter::Match, Some(name)) => pattern_applies(p, name),
            (_, Some(name)) => *name == p.name,
        }
    }

    fn matches_entry(&self, e: &AclEntry) -> bool {
        self.principal.as_ref().is_none_or(|p| *p == e.principal)
            && self.host.as_ref().is_none_or(|h| *h == e.host)
            && self.operation.is_none_or(|o| o == e.operation)
            && self.permission.is_none_or(|p| p == e.permission)
    }
}

/// Whether pattern `p` applies to the resource called `name` (of its type).
fn pattern_applies(p: &ResourcePattern, name: &str) -> bool {
    match p.pattern_type {
        PatternType::Literal => p.name == name || p.name == WILDCARD,
        PatternType::Prefixed => name.starts_with(p.name.as_str()),
    }
}

/// Every ACL of the cluster, by resource type and pattern type, then name
/// (part of the metadata image).
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct AclStore {
    by_kind: BTreeMap<(ResourceType, PatternType), BTreeMap<String, BTreeSet<AclEntry>>>,
    len: usize,
    /// The longest prefixed pattern ever held (an upper bound: removals do
    /// not lower it): a check tries no longer prefix of a name.
    prefix_len_max: usize,
}

impl AclStore {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn names(
        &self,
        t: ResourceType,
        p: PatternType,
    ) -> Option<&BTreeMap<String, BTreeSet<AclEntry>>> {
        self.by_kind.get(&(t, p))
    }

    pub fn contains(&self, acl: &AclBinding) -> bool {
        let p = &acl.pattern;
        self.names(p.resource_type, p.pattern_type)
            .and_then(|n| n.get(&p.name))
            .is_some_and(|e| e.contains(&acl.entry))
    }

    pub fn insert(&mut self, acl: &AclBinding) {
        let p = &acl.pattern;
        let entries = self
            .by_kind
            .entry((p.resource_type, p.pattern_type))
            .or_default()
            .entry(p.name.clone())
            .or_default();
        if entries.insert(acl.entry.clone()) {
            self.len += 1;
            if p.pattern_type == PatternType::Prefixed {
                self.prefix_len_max = self.prefix_len_max.max(p.name.len());
            }
        }
    }

    pub fn remove(&mut self, acl: &AclBinding) {
        let p = &acl.pattern;
        let kind = (p.resource_type, p.pattern_type);
        let Some(names) = self.by_kind.get_mut(&kind) else {
            return;
        };
        let Some(entries) = names.get_mut(&p.name) else {
            return;
        };
        if entries.remove(&acl.entry) {
            self.len -= 1;
        }
        if entries.is_empty() {
            names.remove(&p.name);
        }
        if names.is_empty() {
            self.by_kind.remove(&kind);
        }
    }

    /// Every ACL, in order.
    pub fn iter(&self) -> impl Iterator<Item = AclBinding> + '_ {
        self.by_kind
            .iter()
            .flat_map(|(&(resource_type, pattern_type), names)| {
                names.iter().flat_map(move |(name, entries)| {
                    entries.iter().map(move |e| AclBinding {
                        pattern: ResourcePattern {
                            resource_type,
                            pattern_type,
                            name: name.clone(),
                        },
                        entry: e.clone(),
                    })
                })
            })
    }

    /// The ACLs a filter selects.
    pub fn matching<'a>(&'a self, filter: &'a AclFilter) -> impl Iterator<Item = AclBinding> + 'a {
        self.iter().filter(move |a| filter.matches(a))
    }

    /// The entries of every pattern that applies to the resource: its
    /// literal name, the literal wildcard and each prefix of the name no
    /// longer than the longest prefixed pattern. Looked up by `&str` (no
    /// allocation), so a check costs at most min(name length, longest
    /// prefix) lookups, not a walk over every ACL.
    fn applying<'a>(
        &'a self,
        resource_type: ResourceType,
        name: &'a str,
    ) -> impl Iterator<Item = &'a AclEntry> + 'a {
        let literal = self.names(resource_type, PatternType::Literal);
        // `*` itself is one literal pattern, not two.
        let wildcard = (name != WILDCARD).then_some(WILDCARD);
        let literal_hits = std::iter::once(name)
            .chain(wildcard)
            .filter_map(move |n| literal.and_then(|m| m.get(n)));
        let prefixed = self.names(resource_type, PatternType::Prefixed);
        let longest = name.len().min(self.prefix_len_max);
        let prefix_hits = (1..=longest)
            .filter(move |i| prefixed.is_some() && name.is_char_boundary(*i))
            .filter_map(move |i| prefixed.and_then(|m| m.get(&name[..i])));
        literal_hits.chain(prefix_hits).flatten()
    }
}

/// The authorizer's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Authorizer {
    /// `allow.everyone.if.no.acl.found`: a resource no ACL applies to is
    /// open to everyone. Kafka's default is false, but Kafka without an
    /// authorizer lets everyone do everything; Runnel always runs its
    /// authorizer with this true by default, so a cluster without ACLs
    /// behaves as Kafka without an authorizer and ACLs restrict from there.
    pub allow_everyone_if_no_acl_found: bool,
    /// Seeded bug: an ALLOW wins over a DENY (rule 3 skipped when an ALLOW
    /// matches), which Kafka's ordering exists to prevent. Caught by
    /// `deny_wins_over_allow`.
    pub bug_allow_wins_over_deny: bool,
}

impl Default for Authorizer {
    fn default() -> Self {
        Authorizer {
            allow_everyone_if_no_acl_found: true,
            bug_allow_wins_over_deny: false,
        }
    }
}

/// Who asks: the principal and the host of a connection.
#[derive(Clone, Copy, Debug)]
pub struct Requester<'a> {
    pub principal: &'a str,
    pub host: &'a str,
}

impl Authorizer {
    /// May `who` do `operation` on the resource `resource_type`/`name`?
    pub fn authorize(
        &self,
        acls: &AclStore,
        who: Requester<'_>,
        operation: Operation,
        resource_type: ResourceType,
        name: &str,
    ) -> bool {
        if acls.is_empty() {
            return self.allow_everyone_if_no_acl_found;
        }
        let mut any = false;
        let mut denied = false;
        let mut allowed = false;
        for e in acls.applying(resource_type, name) {
            any = true;
            if !applies_to(e, who) {
                continue;
            }
            match e.permission {
                Permission::Deny => {
                    denied |= e.operation == Operation::All || e.operation == operation
                }
                Permission::Allow => {
                    allowed |= e.operation == Operation::All
                        || operation.implied_by().contains(&e.operation)
                }
            }
        }
        if !any {
            return self.allow_everyone_if_no_acl_found;
        }
        if self.bug_allow_wins_over_deny && allowed {
            return true;
        }
        !denied && allowed
    }

    /// KIP-430's authorized operations: a bit (1 << code) for each of the
    /// resource type's operations `who` may do on it.
    pub fn authorized_operations(
        &self,
        acls: &AclStore,
        who: Requester<'_>,
        resource_type: ResourceType,
        name: &str,
    ) -> i32 {
        resource_type
            .operations()
            .iter()
            .filter(|op| self.authorize(acls, who, **op, resource_type, name))
            .fold(0, |bits, op| bits | (1 << op.code()))
    }
}

fn applies_to(e: &AclEntry, who: Requester<'_>) -> bool {
    (e.principal == who.principal || e.principal == "User:*")
        && (e.host == who.host || e.host == WILDCARD)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WHO: Requester<'static> = Requester {
        principal: ANONYMOUS,
        host: "127.0.0.1",
    };

    fn acl(
        resource_type: ResourceType,
        pattern_type: PatternType,
        name: &str,
        principal: &str,
        operation: Operation,
        permission: Permission,
    ) -> AclBinding {
        AclBinding {
            pattern: ResourcePattern {
                resource_type,
                pattern_type,
                name: name.into(),
            },
            entry: AclEntry {
                principal: principal.into(),
                host: "*".into(),
                operation,
                permission,
            },
        }
    }

    fn store(acls: &[AclBinding]) -> AclStore {
        let mut s = AclStore::default();
        for a in acls {
            s.insert(a);
        }
        s
    }

    use Operation::*;
    use PatternType::*;
    use Permission::*;
    use ResourceType::*;

    #[test]
    fn no_acl_for_a_resource_is_allow_everyone_if_no_acl_found() {
        let s = store(&[acl(Topic, Literal, "other", "User:*", All, Deny)]);
        let open = Authorizer::default();
        assert!(open.authorize(&s, WHO, Write, Topic, "t"));
        assert!(open.authorize(&AclStore::default(), WHO, Write, Topic, "t"));
        let closed = Authorizer {
            allow_everyone_if_no_acl_found: false,
            ..open
        };
        assert!(!closed.authorize(&s, WHO, Write, Topic, "t"));
        assert!(!closed.authorize(&s, WHO, Write, Group, "other"));
    }

    /// librdkafka 0119: allow Describe, deny Read for `User:*` on a topic.
    #[test]
    fn deny_wins_over_allow() {
        let s = store(&[
            acl(Topic, Literal, "t", "User:*", Describe, Allow),
            acl(Topic, Literal, "t", "User:*", Read, Deny),
            acl(Topic, Literal, "t", "User:*", Read, Allow),
        ]);
        let a = Authorizer::default();
        assert!(a.authorize(&s, WHO, Describe, Topic, "t"));
        assert!(
            !a.authorize(&s, WHO, Read, Topic, "t"),
            "an explicit DENY Read"
        );
        assert!(
            !a.authorize(&s, WHO, Write, Topic, "t"),
            "nothing allows Write"
        );
        let buggy = Authorizer {
            bug_allow_wins_over_deny: true,
            ..a
        };
        assert!(
            buggy.authorize(&s, WHO, Read, Topic, "t"),
            "the seeded bug lets the ALLOW through: this test catches it"
        );
    }

    #[test]
    fn deny_all_denies_every_operation_and_describe_is_implied() {
        let s = store(&[acl(Topic, Literal, "t", "User:*", All, Deny)]);
        let a = Authorizer::default();
        for op in Topic.operations() {
            assert!(!a.authorize(&s, WHO, *op, Topic, "t"), "{op:?}");
        }
        assert_eq!(a.authorized_operations(&s, WHO, Topic, "t"), 0);
        let s = store(&[acl(Topic, Literal, "t", ANONYMOUS, Write, Allow)]);
        assert!(
            a.authorize(&s, WHO, Describe, Topic, "t"),
            "WRITE implies DESCRIBE"
        );
        assert!(!a.authorize(&s, WHO, Read, Topic, "t"));
        assert_eq!(
            a.authorized_operations(&s, WHO, Topic, "t"),
            (1 << Write.code()) | (1 << Describe.code())
        );
    }

    #[test]
    fn wildcard_and_prefixed_patterns_apply_and_others_do_not() {
        let s = store(&[
            acl(Topic, Literal, "*", "User:*", Write, Deny),
            acl(Topic, Prefixed, "pay", "User:*", Read, Deny),
            acl(Group, Literal, "t", "User:*", Read, Deny),
            acl(Topic, Literal, "x", "User:bob", Read, Deny),
        ]);
        let a = Authorizer::default();
        assert!(!a.authorize(&s, WHO, Write, Topic, "anything"));
        assert!(!a.authorize(&s, WHO, Read, Topic, "payments"));
        // A long name tries no prefix longer than the longest pattern.
        assert!(!a.authorize(&s, WHO, Read, Topic, &"pay".repeat(100_000)));
        // A prefix of "pay" or another type's ACL do not apply.
        assert!(a.authorize(&s, WHO, Read, Group, "payments"));
        // Bob's DENY is not ANONYMOUS's; the wildcard still makes ACLs
        // apply to "x", and none allows Read there.
        assert!(!a.authorize(&s, WHO, Read, Topic, "x"));
        let bob = Requester {
            principal: "User:bob",
            host: "10.0.0.1",
        };
        assert!(!a.authorize(&s, bob, Read, Topic, "x"));
    }

    #[test]
    fn creations_are_validated_as_kafka_does() {
        let ok = AclBinding::from_wire(2, "t", 3, "User:*", "*", 3, 2).unwrap();
        assert_eq!(ok.entry.operation, Read);
        let cases = [
            (1, "t", 3, "User:*", 3, 2, "Invalid resourceType 1"),
            (2, "t", 2, "User:*", 3, 2, "Invalid patternType 2"),
            (2, "t", 3, "User:*", 1, 2, "Invalid operation 1"),
            (2, "t", 3, "User:*", 3, 1, "Invalid permissionType 1"),
            (
                2,
                "",
                3,
                "User:*",
                3,
                2,
                "Resource name should not be empty",
            ),
            (
                4,
                "c",
                3,
                "User:*",
                7,
                3,
                "The only valid name for the CLUSTER",
            ),
            (2, "t", 3, "nobody", 3, 2, "Could not parse principal"),
        ];
        for (rt, name, pt, principal, op, perm, message) in cases {
            let e = AclBinding::from_wire(rt, name, pt, principal, "*", op, perm).unwrap_err();
            assert!(e.starts_with(message), "{e}");
        }
    }

    #[test]
    fn filters_select_as_kafka_does() {
        let lit = acl(Topic, Literal, "payments", "User:*", Read, Deny);
        let pre = acl(Topic, Prefixed, "pay", "User:*", Read, Deny);
        let wild = acl(Topic, Literal, "*", "User:*", Read, Deny);
        let s = store(&[lit.clone(), pre.clone(), wild.clone()]);
        let f = |pattern_type, name: Option<&str>| {
            AclFilter::from_wire(2, name, pattern_type, None, None, 1, 1).unwrap()
        };
        let pick = |filter: AclFilter| s.matching(&filter).collect::<Vec<_>>();
        assert_eq!(pick(f(1, None)).len(), 3);
        assert_eq!(
            pick(f(2, Some("payments"))).len(),
            3,
            "MATCH: all three apply"
        );
        assert_eq!(pick(f(3, Some("payments"))), vec![lit]);
        assert_eq!(pick(f(4, Some("pay"))), vec![pre]);
        assert_eq!(pick(f(1, Some("*"))), vec![wild]);
        assert!(AclFilter::from_wire(0, None, 1, None, None, 1, 1).is_err());
        assert!(AclFilter::from_wire(2, None, 0, None, None, 1, 1).is_err());
    }

    #[test]
    fn the_store_counts_what_it_holds() {
        let a = acl(Topic, Literal, "t", "User:*", Read, Deny);
        let mut s = AclStore::default();
        s.insert(&a);
        s.insert(&a);
        assert_eq!(s.len(), 1);
        s.remove(&a);
        s.remove(&a);
        assert!(s.is_empty());
        assert_eq!(s.iter().count(), 0);
    }
}
