//! The platform's error codes (DESIGN §12) and the JSON envelope native APIs answer with.

use serde::{Deserialize, Serialize};

/// A platform error code, written `LUCID_ERR_<n>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    RegistrationFailed,
    ServiceNotFound,
    AlreadyRegistered,
    InvalidConfiguration,
    DiscoveryTimeout,
    SidecarConfigFailed,
    PolicyValidationFailed,
    RoutingInvalid,
    UpstreamUnavailable,
    PolicyEnforcementFailed,
    TrafficPolicyFailed,
    CircuitBreakerConfigInvalid,
    SecurityPolicyViolation,
    MtlsConfigFailed,
    ControllerUnavailable,
    Timeout,
}

impl ErrorCode {
    /// Every code, for tables and tests.
    pub const ALL: [ErrorCode; 16] = [
        ErrorCode::RegistrationFailed,
        ErrorCode::ServiceNotFound,
        ErrorCode::AlreadyRegistered,
        ErrorCode::InvalidConfiguration,
        ErrorCode::DiscoveryTimeout,
        ErrorCode::SidecarConfigFailed,
        ErrorCode::PolicyValidationFailed,
        ErrorCode::RoutingInvalid,
        ErrorCode::UpstreamUnavailable,
        ErrorCode::PolicyEnforcementFailed,
        ErrorCode::TrafficPolicyFailed,
        ErrorCode::CircuitBreakerConfigInvalid,
        ErrorCode::SecurityPolicyViolation,
        ErrorCode::MtlsConfigFailed,
        ErrorCode::ControllerUnavailable,
        ErrorCode::Timeout,
    ];

    /// The numeric code.
    pub fn number(self) -> u16 {
        match self {
            ErrorCode::RegistrationFailed => 1001,
            ErrorCode::ServiceNotFound => 1002,
            ErrorCode::AlreadyRegistered => 1003,
            ErrorCode::InvalidConfiguration => 1004,
            ErrorCode::DiscoveryTimeout => 1005,
            ErrorCode::SidecarConfigFailed => 1101,
            ErrorCode::PolicyValidationFailed => 1102,
            ErrorCode::RoutingInvalid => 1103,
            ErrorCode::UpstreamUnavailable => 1104,
            ErrorCode::PolicyEnforcementFailed => 1105,
            ErrorCode::TrafficPolicyFailed => 1201,
            ErrorCode::CircuitBreakerConfigInvalid => 1202,
            ErrorCode::SecurityPolicyViolation => 1203,
            ErrorCode::MtlsConfigFailed => 1204,
            ErrorCode::ControllerUnavailable => 1205,
            ErrorCode::Timeout => 1305,
        }
    }

    /// The code as written on the wire, e.g. `LUCID_ERR_1002`.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::RegistrationFailed => "LUCID_ERR_1001",
            ErrorCode::ServiceNotFound => "LUCID_ERR_1002",
            ErrorCode::AlreadyRegistered => "LUCID_ERR_1003",
            ErrorCode::InvalidConfiguration => "LUCID_ERR_1004",
            ErrorCode::DiscoveryTimeout => "LUCID_ERR_1005",
            ErrorCode::SidecarConfigFailed => "LUCID_ERR_1101",
            ErrorCode::PolicyValidationFailed => "LUCID_ERR_1102",
            ErrorCode::RoutingInvalid => "LUCID_ERR_1103",
            ErrorCode::UpstreamUnavailable => "LUCID_ERR_1104",
            ErrorCode::PolicyEnforcementFailed => "LUCID_ERR_1105",
            ErrorCode::TrafficPolicyFailed => "LUCID_ERR_1201",
            ErrorCode::CircuitBreakerConfigInvalid => "LUCID_ERR_1202",
            ErrorCode::SecurityPolicyViolation => "LUCID_ERR_1203",
            ErrorCode::MtlsConfigFailed => "LUCID_ERR_1204",
            ErrorCode::ControllerUnavailable => "LUCID_ERR_1205",
            ErrorCode::Timeout => "LUCID_ERR_1305",
        }
    }

    /// Parse `LUCID_ERR_<n>` back into a code.
    pub fn from_wire(s: &str) -> Option<ErrorCode> {
        ErrorCode::ALL.into_iter().find(|c| c.as_str() == s)
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `{"error":{"code":"LUCID_ERR_1002","message":"..."}}`
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The inside of [`ErrorBody`].
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code: code.as_str().to_owned(),
                message: message.into(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_form_round_trips_and_matches_number() {
        for c in ErrorCode::ALL {
            assert_eq!(c.as_str(), format!("LUCID_ERR_{}", c.number()));
            assert_eq!(ErrorCode::from_wire(c.as_str()), Some(c));
        }
        assert_eq!(ErrorCode::from_wire("LUCID_ERR_9999"), None);
    }

    #[test]
    fn envelope_shape() {
        let body = ErrorBody::new(ErrorCode::ServiceNotFound, "no such service");
        let v = serde_json::to_value(&body).unwrap();
        assert_eq!(v["error"]["code"], "LUCID_ERR_1002");
        assert_eq!(v["error"]["message"], "no such service");
    }
}
