//! Route policy decisions: given a route's policy and the identity (if any), allow or refuse.
//! Pure functions; never reads a request or the store.

use crate::config::Policy;
use crate::identity::Identity;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    Allow,
    /// No valid identity where one is required: 401.
    Unauthenticated,
    /// An identity without the required role: 403.
    Forbidden,
}

/// Whether the policy needs the request's credential looked at at all.
pub(crate) fn wants_identity(policy: &Policy) -> bool {
    !matches!(policy, Policy::Public)
}

pub(crate) fn decide(policy: &Policy, identity: Option<&Identity>) -> Decision {
    match (policy, identity) {
        (Policy::Public | Policy::Optional, _) => Decision::Allow,
        (Policy::Authenticated | Policy::Roles(_), None) => Decision::Unauthenticated,
        (Policy::Authenticated, Some(_)) => Decision::Allow,
        (Policy::Roles(roles), Some(id)) if roles.contains(&id.role) => Decision::Allow,
        (Policy::Roles(_), Some(_)) => Decision::Forbidden,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::Role;
    #[test]
    fn decisions() {
        let user = Identity::new("u".into(), "u@x.io".into(), Role::User, None, None).unwrap();
        let admin = Identity::new("a".into(), "a@x.io".into(), Role::Admin, None, None).unwrap();
        let admins = Policy::Roles(vec![Role::Admin]);
        assert_eq!(decide(&Policy::Public, None), Decision::Allow);
        assert_eq!(decide(&Policy::Optional, None), Decision::Allow);
        assert_eq!(
            decide(&Policy::Authenticated, None),
            Decision::Unauthenticated
        );
        assert_eq!(decide(&Policy::Authenticated, Some(&user)), Decision::Allow);
        assert_eq!(decide(&admins, None), Decision::Unauthenticated);
        assert_eq!(decide(&admins, Some(&user)), Decision::Forbidden);
        assert_eq!(decide(&admins, Some(&admin)), Decision::Allow);
        assert!(!wants_identity(&Policy::Public));
        assert!(wants_identity(&Policy::Optional));
    }
}
