//! Identifiers: nodes, incidents, events, grid codes and scopes.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A node (device or relay). The node id *is* the node's Ed25519 public key, so anyone holding
/// an id can check the node's TLS certificate and, later, its event signatures without a
/// directory. Text form: 64 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct NodeId(pub [u8; 32]);

impl NodeId {
    /// The id as 64 lowercase hex digits.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// The first 8 hex digits, for tables and logs.
    pub fn short(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "NodeId({})", self.short())
    }
}

/// A node id text that is not 64 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a node id (expected 64 hex digits): {0:?}")]
pub struct ParseNodeIdError(pub String);

impl FromStr for NodeId {
    type Err = ParseNodeIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut out).map_err(|_| ParseNodeIdError(s.to_owned()))?;
        Ok(Self(out))
    }
}

/// An incident: a UUIDv7, made offline from the reporting device's clock and randomness.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct IncidentId(pub uuid::Uuid);

impl IncidentId {
    /// Builds a UUIDv7 from a Unix time in milliseconds and 10 random bytes, both supplied by
    /// the caller (core never reads the clock or a random source).
    pub fn new_v7(unix_ms: u64, random: [u8; 10]) -> Self {
        Self(uuid::Builder::from_unix_timestamp_millis(unix_ms, &random).into_uuid())
    }
}

impl fmt::Display for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.hyphenated().fmt(f)
    }
}

impl fmt::Debug for IncidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IncidentId({})", self.0)
    }
}

/// An incident id text that is not a UUID.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not an incident id (expected a UUID like 0192f0c1-7a2b-7c3d-8e4f-5a6b7c8d9e0f): {0:?}")]
pub struct ParseIncidentIdError(pub String);

impl FromStr for IncidentId {
    type Err = ParseIncidentIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        uuid::Uuid::parse_str(s.trim())
            .map(Self)
            .map_err(|_| ParseIncidentIdError(s.to_owned()))
    }
}

/// One event's identity: its origin and the origin's sequence number (contiguous from 1).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
pub struct EventId {
    pub origin: NodeId,
    pub seq: u64,
}

/// Why a grid code or scope text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GridError {
    #[error("grid code {0:?} must have exactly four segments district/street/community/grid, e.g. 110101/002/014/03")]
    Segments(String),
    #[error("scope {0:?} must have one to four segments, e.g. 110101/002")]
    ScopeSegments(String),
    #[error("segment {segment:?} of {code:?} must be 1 to 12 ASCII letters or digits")]
    Segment { code: String, segment: String },
}

fn check_segments(code: &str) -> Result<usize, GridError> {
    let mut n = 0;
    for segment in code.split('/') {
        n += 1;
        let ok =
            (1..=12).contains(&segment.len()) && segment.bytes().all(|b| b.is_ascii_alphanumeric());
        if !ok {
            return Err(GridError::Segment {
                code: code.to_owned(),
                segment: segment.to_owned(),
            });
        }
    }
    Ok(n)
}

/// A grid: four `/`-separated segments, district/street/community/grid, e.g.
/// `110101/002/014/03`. A [`Scope`] is a prefix of whole segments.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GridCode(String);

impl GridCode {
    /// The code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether this grid lies inside `scope`.
    pub fn is_in(&self, scope: &Scope) -> bool {
        scope.contains(self)
    }
}

impl TryFrom<String> for GridCode {
    type Error = GridError;

    fn try_from(s: String) -> Result<Self, GridError> {
        if check_segments(&s)? != 4 {
            return Err(GridError::Segments(s));
        }
        Ok(Self(s))
    }
}

impl From<GridCode> for String {
    fn from(g: GridCode) -> String {
        g.0
    }
}

impl FromStr for GridCode {
    type Err = GridError;

    fn from_str(s: &str) -> Result<Self, GridError> {
        Self::try_from(s.trim().to_owned())
    }
}

impl fmt::Display for GridCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A prefix of one to four whole grid-code segments: `110101` (a district), `110101/002`
/// (a street), `110101/002/014` (a community) or a whole grid code.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Scope(String);

impl Scope {
    /// Whether `grid` lies inside this scope (segment-wise: `110101/00` contains nothing).
    pub fn contains(&self, grid: &GridCode) -> bool {
        let g = grid.as_str();
        g == self.0 || (g.starts_with(&self.0) && g.as_bytes().get(self.0.len()) == Some(&b'/'))
    }

    /// The scope as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl From<&GridCode> for Scope {
    fn from(g: &GridCode) -> Self {
        Self(g.0.clone())
    }
}

impl TryFrom<String> for Scope {
    type Error = GridError;

    fn try_from(s: String) -> Result<Self, GridError> {
        if !(1..=4).contains(&check_segments(&s)?) {
            return Err(GridError::ScopeSegments(s));
        }
        Ok(Self(s))
    }
}

impl From<Scope> for String {
    fn from(s: Scope) -> String {
        s.0
    }
}

impl FromStr for Scope {
    type Err = GridError;

    fn from_str(s: &str) -> Result<Self, GridError> {
        Self::try_from(s.trim().to_owned())
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grid_codes_need_four_segments() {
        assert!("110101/002/014/03".parse::<GridCode>().is_ok());
        assert!(matches!(
            "110101/002/014".parse::<GridCode>(),
            Err(GridError::Segments(_))
        ));
        assert!(matches!(
            "110101//014/03".parse::<GridCode>(),
            Err(GridError::Segment { .. })
        ));
        assert!("110101/002/014/0 3".parse::<GridCode>().is_err());
    }

    #[test]
    fn scopes_match_whole_segments_only() {
        let g: GridCode = "110101/002/014/03".parse().unwrap();
        for yes in [
            "110101",
            "110101/002",
            "110101/002/014",
            "110101/002/014/03",
        ] {
            assert!(yes.parse::<Scope>().unwrap().contains(&g), "{yes}");
        }
        for no in ["110102", "110101/00", "110101/002/014/0", "110101/003"] {
            assert!(!no.parse::<Scope>().unwrap().contains(&g), "{no}");
        }
    }

    #[test]
    fn incident_ids_are_v7_and_time_ordered() {
        let a = IncidentId::new_v7(1_000, [1; 10]);
        let b = IncidentId::new_v7(2_000, [0; 10]);
        assert_eq!(a.0.get_version_num(), 7);
        assert!(a < b);
        assert_eq!(a.to_string().parse::<IncidentId>(), Ok(a));
    }

    #[test]
    fn node_ids_parse_from_hex() {
        let n = NodeId([7; 32]);
        assert_eq!(n.to_hex().parse::<NodeId>(), Ok(n));
        assert!("07".parse::<NodeId>().is_err());
    }
}
