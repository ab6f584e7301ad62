//! Test identities and the enrollment plan an operator (or spawn mode) carries out.
//!
//! `identities --out DIR --count N` writes `DIR/identities.json`: N Ed25519 identities, each
//! with the part it plays. The first seven are fixed: two devices of grid A, one of grid B, a
//! street relay for the test scope, one never enrolled, one enrolled then revoked, a community
//! workstation for grid A's community; any further ones are extra devices of grid A.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The grid of the `device-a*` identities.
pub const GRID_A: &str = "990000/001/001/01";
/// The grid of `device-b`.
pub const GRID_B: &str = "990000/001/002/01";
/// The street relay's scope: contains both grids.
pub const STREET_SCOPE: &str = "990000/001";
/// The community workstation's scope: grid A's community (three segments), inside the street.
pub const COMMUNITY_SCOPE: &str = "990000/001/001";
/// A grid outside the street's scope.
pub const GRID_OUTSIDE: &str = "990000/002/001/01";
/// The identity file's name in the directory.
pub const FILE: &str = "identities.json";
/// The fewest identities a run needs.
pub const MIN_COUNT: usize = 7;

const FORMAT: &str = "gridsync-conformance identities v1";

/// What an identity is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Part {
    /// Enroll as a device for `grid`.
    Device,
    /// Enroll as a street relay for `scope`.
    Street,
    /// Enroll as a community workstation (a relay) for `scope`.
    Community,
    /// Never enroll.
    Stranger,
    /// Enroll as a device for `grid`, then revoke.
    Revoked,
}

/// One identity as written in the file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Identity {
    pub name: String,
    pub part: Part,
    /// A device's grid, or a street relay's scope.
    pub scope: Option<String>,
    pub node_id: String,
    /// The Ed25519 seed, hex. Test material only.
    pub secret: String,
    /// What an operator runs at a reference relay to carry out the plan.
    pub enroll: Vec<String>,
}

impl Identity {
    /// The seed bytes.
    pub fn seed(&self) -> Result<[u8; 32], IdentityError> {
        let bytes = hex::decode(&self.secret).map_err(|_| IdentityError::BadSecret {
            name: self.name.clone(),
        })?;
        <[u8; 32]>::try_from(bytes).map_err(|_| IdentityError::BadSecret {
            name: self.name.clone(),
        })
    }

    /// The node id bytes (the public key of the seed). The harness then holds the seed to
    /// sign this identity's events with ([`crate::events::register`]).
    pub fn key(&self) -> Result<[u8; 32], IdentityError> {
        Ok(crate::events::register(&self.seed()?))
    }
}

/// The identity file.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Identities {
    pub format: String,
    pub identities: Vec<Identity>,
}

/// Why identities could not be made or read.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    #[error("{path}: {error}")]
    Io {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("{path}: not a gridsync-conformance identity file: {error}")]
    Format { path: PathBuf, error: String },
    #[error("{path}: holds {have} identities; a run needs at least {MIN_COUNT} (make them with `gridsync-conformance identities --out DIR --count {MIN_COUNT}`)")]
    TooFew { path: PathBuf, have: usize },
    #[error("identity {name}: the secret is not 64 hex digits")]
    BadSecret { name: String },
    #[error("--count {0}: at least {MIN_COUNT} identities are needed")]
    Count(usize),
    #[error("{0}: already holds an identity file; remove it or choose another folder")]
    Exists(PathBuf),
    #[error("no randomness from the operating system: {0}")]
    Random(String),
}

/// The Ed25519 public key (node id) of a seed.
pub fn public_key(seed: &[u8; 32]) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(seed)
        .verifying_key()
        .to_bytes()
}

/// A fresh random seed.
pub fn random_seed() -> Result<[u8; 32], IdentityError> {
    let mut seed = [0u8; 32];
    getrandom::getrandom(&mut seed).map_err(|e| IdentityError::Random(e.to_string()))?;
    Ok(seed)
}

/// Makes `count` identities with their parts.
pub fn generate(count: usize) -> Result<Identities, IdentityError> {
    if count < MIN_COUNT {
        return Err(IdentityError::Count(count));
    }
    let mut out = Vec::with_capacity(count);
    for i in 0..count {
        let (name, part, scope) = match i {
            0 => ("device-a".to_owned(), Part::Device, Some(GRID_A)),
            1 => ("device-a2".to_owned(), Part::Device, Some(GRID_A)),
            2 => ("device-b".to_owned(), Part::Device, Some(GRID_B)),
            3 => ("street".to_owned(), Part::Street, Some(STREET_SCOPE)),
            4 => ("stranger".to_owned(), Part::Stranger, None),
            5 => ("revoked".to_owned(), Part::Revoked, Some(GRID_A)),
            6 => (
                "community".to_owned(),
                Part::Community,
                Some(COMMUNITY_SCOPE),
            ),
            n => (format!("device-a{}", n - 4), Part::Device, Some(GRID_A)),
        };
        let seed = random_seed()?;
        let node_id = hex::encode(public_key(&seed));
        let enroll = match (part, scope) {
            (Part::Device, Some(g)) => vec![format!("gridsync-relay enroll {node_id} --grid {g}")],
            (Part::Street | Part::Community, Some(s)) => {
                vec![format!(
                    "gridsync-relay enroll {node_id} --relay --scope {s}"
                )]
            }
            (Part::Revoked, Some(g)) => vec![
                format!("gridsync-relay enroll {node_id} --grid {g}"),
                format!("gridsync-relay revoke {node_id}"),
            ],
            _ => Vec::new(),
        };
        out.push(Identity {
            name,
            part,
            scope: scope.map(str::to_owned),
            node_id,
            secret: hex::encode(seed),
            enroll,
        });
    }
    Ok(Identities {
        format: FORMAT.to_owned(),
        identities: out,
    })
}

/// Writes the identities to `dir/identities.json` (the folder is created; an existing file
/// is never overwritten).
pub fn write(dir: &Path, ids: &Identities) -> Result<PathBuf, IdentityError> {
    std::fs::create_dir_all(dir).map_err(|error| IdentityError::Io {
        path: dir.to_owned(),
        error,
    })?;
    let path = dir.join(FILE);
    if path.exists() {
        return Err(IdentityError::Exists(path));
    }
    let text = serde_json::to_string_pretty(ids).map_err(|e| IdentityError::Format {
        path: path.clone(),
        error: e.to_string(),
    })?;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let io = |error| IdentityError::Io {
        path: path.clone(),
        error,
    };
    let mut file = options.open(&path).map_err(io)?;
    std::io::Write::write_all(&mut file, format!("{text}\n").as_bytes()).map_err(io)?;
    Ok(path)
}

/// Reads `dir/identities.json` (or the file itself if `dir` is one).
pub fn read(dir: &Path) -> Result<Identities, IdentityError> {
    let path = if dir.is_dir() {
        dir.join(FILE)
    } else {
        dir.to_owned()
    };
    let text = std::fs::read_to_string(&path).map_err(|error| IdentityError::Io {
        path: path.clone(),
        error,
    })?;
    let ids: Identities = serde_json::from_str(&text).map_err(|e| IdentityError::Format {
        path: path.clone(),
        error: e.to_string(),
    })?;
    if ids.format != FORMAT {
        return Err(IdentityError::Format {
            path,
            error: format!("format {:?}, expected {FORMAT:?}", ids.format),
        });
    }
    if ids.identities.len() < MIN_COUNT {
        return Err(IdentityError::TooFew {
            path,
            have: ids.identities.len(),
        });
    }
    for id in &ids.identities {
        id.seed()?;
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_round_trip_and_keep_their_parts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ids = generate(8).expect("generate");
        write(dir.path(), &ids).expect("write");
        assert!(matches!(
            write(dir.path(), &ids),
            Err(IdentityError::Exists(_))
        ));
        let back = read(dir.path()).expect("read");
        assert_eq!(back.identities.len(), 8);
        assert_eq!(back.identities[3].part, Part::Street);
        assert_eq!(back.identities[6].part, Part::Community);
        assert_eq!(
            back.identities[6].enroll,
            vec![format!(
                "gridsync-relay enroll {} --relay --scope {COMMUNITY_SCOPE}",
                back.identities[6].node_id
            )]
        );
        assert_eq!(back.identities[7].name, "device-a3");
        for id in &back.identities {
            assert_eq!(hex::encode(id.key().expect("key")), id.node_id);
        }
        assert!(matches!(generate(6), Err(IdentityError::Count(6))));
    }
}
