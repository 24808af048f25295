//! Operator control of the export side (docs/contracts.md, "Operations"): which tenants'
//! exports are paused. A paused tenant+signal keeps being accepted and buffered (within its
//! quota); its export worker reads nothing more until it is resumed, and finishes what it
//! already sent. Pauses are kept in a state file (written atomically), so they survive a
//! restart.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use crate::signal::Signal;
use crate::tenant::TenantId;

/// A pause: every signal of the tenant (`signal: None`), or one.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Pause {
    pub tenant: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<Signal>,
}

/// What the state file holds.
#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControlState {
    #[serde(default)]
    pub paused: BTreeSet<Pause>,
}

impl ControlState {
    /// Whether `tenant`'s `signal` is paused.
    pub fn is_paused(&self, tenant: &TenantId, signal: Signal) -> bool {
        self.paused
            .iter()
            .any(|p| p.tenant == tenant.as_str() && p.signal.is_none_or(|s| s == signal))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("cannot read the state file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the state file {path} is not valid: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("cannot write the state file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The pauses of this process, shared by the admin API (which changes them) and the export
/// workers (which follow them).
pub struct ExportControl {
    state: watch::Sender<ControlState>,
    /// `None`: kept in memory only (tests, or no admin API).
    file: Option<PathBuf>,
    /// Serialises changes, so two writes of the file never interleave.
    writing: std::sync::Mutex<()>,
}

impl ExportControl {
    /// Loads the state from `file` (none yet is an empty state).
    pub fn load(file: Option<PathBuf>) -> Result<ExportControl, ControlError> {
        let state = match &file {
            Some(path) => read_state(path)?,
            None => ControlState::default(),
        };
        if !state.paused.is_empty() {
            tracing::info!(paused = ?state.paused, "exports paused by an operator (state file)");
        }
        Ok(ExportControl {
            state: watch::Sender::new(state),
            file,
            writing: std::sync::Mutex::new(()),
        })
    }

    /// In memory only.
    pub fn ephemeral() -> ExportControl {
        ExportControl {
            state: watch::Sender::new(ControlState::default()),
            file: None,
            writing: std::sync::Mutex::new(()),
        }
    }

    /// Follows the state; an export worker waits on it while paused.
    pub fn subscribe(&self) -> watch::Receiver<ControlState> {
        self.state.subscribe()
    }

    pub fn snapshot(&self) -> ControlState {
        self.state.borrow().clone()
    }

    /// Pauses `tenant` (one signal, or all). False when it already was.
    pub fn pause(&self, tenant: &TenantId, signal: Option<Signal>) -> Result<bool, ControlError> {
        self.change(|state| {
            let covered = match signal {
                Some(s) => state.is_paused(tenant, s),
                None => state.paused.contains(&pause_of(tenant, None)),
            };
            if covered {
                return false;
            }
            if signal.is_none() {
                // The tenant-wide pause replaces its per-signal ones.
                state.paused.retain(|p| p.tenant != tenant.as_str());
            }
            state.paused.insert(pause_of(tenant, signal))
        })
    }

    /// Resumes `tenant` (one signal, or all). False when nothing of it was paused.
    pub fn resume(&self, tenant: &TenantId, signal: Option<Signal>) -> Result<bool, ControlError> {
        self.change(|state| {
            let before = state.paused.clone();
            match signal {
                None => state.paused.retain(|p| p.tenant != tenant.as_str()),
                Some(s) => {
                    // A tenant-wide pause becomes pauses of the other signals.
                    if state.paused.remove(&pause_of(tenant, None)) {
                        for other in Signal::ALL.into_iter().filter(|o| *o != s) {
                            state.paused.insert(pause_of(tenant, Some(other)));
                        }
                    }
                    state.paused.remove(&pause_of(tenant, Some(s)));
                }
            }
            state.paused != before
        })
    }

    /// Applies `edit`; when it changed something, writes the file first, then tells the
    /// workers. A failed write changes nothing.
    fn change(&self, edit: impl FnOnce(&mut ControlState) -> bool) -> Result<bool, ControlError> {
        let _writing = self
            .writing
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut next = self.state.borrow().clone();
        if !edit(&mut next) {
            return Ok(false);
        }
        if let Some(path) = &self.file {
            write_state(path, &next)?;
        }
        self.state.send_replace(next);
        Ok(true)
    }
}

fn pause_of(tenant: &TenantId, signal: Option<Signal>) -> Pause {
    Pause {
        tenant: tenant.as_str().to_string(),
        signal,
    }
}

fn read_state(path: &Path) -> Result<ControlState, ControlError> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ControlError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(ControlState::default()),
        Err(source) => Err(ControlError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Writes a temporary file, fsyncs it, renames it over `path` and fsyncs the directory: a
/// crash leaves the old state or the new one, never half of one.
fn write_state(path: &Path, state: &ControlState) -> Result<(), ControlError> {
    let failed = |source| ControlError::Write {
        path: path.to_path_buf(),
        source,
    };
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(failed)?;
    let tmp = path.with_extension("json.tmp");
    let mut file = std::fs::File::create(&tmp).map_err(failed)?;
    let body = serde_json::to_vec_pretty(state).map_err(|e| failed(e.into()))?;
    file.write_all(&body)
        .and_then(|()| file.sync_all())
        .map_err(failed)?;
    std::fs::rename(&tmp, path).map_err(failed)?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(t: &str) -> TenantId {
        TenantId::parse(t).unwrap()
    }

    #[test]
    fn pauses_cover_signals_and_survive_a_reload() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("state").join("admin.json");
        let control = ExportControl::load(Some(file.clone())).unwrap();
        let (a, b) = (tenant("a"), tenant("b"));
        assert!(control.pause(&a, None).unwrap());
        assert!(
            !control.pause(&a, Some(Signal::Logs)).unwrap(),
            "already covered"
        );
        assert!(control.pause(&b, Some(Signal::Traces)).unwrap());
        let state = control.snapshot();
        assert!(state.is_paused(&a, Signal::Metrics));
        assert!(state.is_paused(&b, Signal::Traces));
        assert!(!state.is_paused(&b, Signal::Logs));

        // Resuming one signal of a tenant-wide pause keeps the others paused.
        assert!(control.resume(&a, Some(Signal::Traces)).unwrap());
        let state = control.snapshot();
        assert!(!state.is_paused(&a, Signal::Traces));
        assert!(state.is_paused(&a, Signal::Logs));

        let reloaded = ExportControl::load(Some(file)).unwrap();
        assert_eq!(reloaded.snapshot(), control.snapshot());
        assert!(reloaded.resume(&a, None).unwrap());
        assert!(
            !reloaded.resume(&a, None).unwrap(),
            "nothing left to resume"
        );
    }

    #[test]
    fn a_broken_state_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("admin.json");
        std::fs::write(&file, "{not json").unwrap();
        let err = ExportControl::load(Some(file.clone())).err().unwrap();
        assert!(
            err.to_string().contains(&file.display().to_string()),
            "{err}"
        );
    }
}
