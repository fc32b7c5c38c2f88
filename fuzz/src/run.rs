//! The bounded run: every seed and regression input as is, then a fixed number of mutants of
//! them, each through a target's entry point with panics caught and reported with the input.

use std::fmt::Write as _;
use std::io;
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::mutate::{mutate, Rng};
use crate::seeds::Seed;
use crate::targets::Target;

/// How much to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// Mutants to run after the inputs themselves.
    pub mutants: u64,
    /// Stop earlier when this much time has passed (long runs by hand; CI counts mutants only).
    pub time: Option<Duration>,
    /// Seed of the mutation RNG: the same seed and inputs give the same mutants.
    pub seed: u64,
}

/// A panic: which input, where it came from, and what the panic said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `seed a.pb`, `regression x.bin`, `mutant 1234 of a.pb`.
    pub origin: String,
    /// The panic message.
    pub message: String,
    /// The input that panicked.
    pub input: Vec<u8>,
}

/// What a run did.
#[derive(Debug, Clone)]
pub struct Report {
    /// The target.
    pub target: &'static str,
    /// Inputs run (seeds, regressions and mutants).
    pub executions: u64,
    /// Wall time.
    pub elapsed: Duration,
    /// The panics (the run stops after [`MAX_FAILURES`]).
    pub failures: Vec<Failure>,
}

/// A run stops after this many panics: more of them rarely say anything new.
pub const MAX_FAILURES: usize = 3;

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "panic with a non-text payload".to_string()
    }
}

/// Runs `target` on one input, turning a panic into its message.
pub fn run_one(target: &Target, input: &[u8]) -> Result<(), String> {
    panic::catch_unwind(AssertUnwindSafe(|| (target.run)(input)))
        .map_err(|payload| panic_message(payload.as_ref()))
}

/// Runs every input, then `budget.mutants` mutants of them.
///
/// `pools` are sets of inputs (generated seeds, the committed corpus, regression inputs): each
/// mutant starts from an input of a pool picked at random, so a pool of a few valid seeds is not
/// drowned by a corpus of hundreds of small fragments.
pub fn run_target(target: &Target, pools: &[&[Seed]], budget: Budget) -> Report {
    let start = Instant::now();
    let mut report = Report {
        target: target.name,
        executions: 0,
        elapsed: Duration::ZERO,
        failures: Vec::new(),
    };
    let check = |report: &mut Report, input: &[u8], origin: &dyn Fn() -> String| {
        report.executions += 1;
        if let Err(message) = run_one(target, input) {
            report.failures.push(Failure {
                origin: origin(),
                message,
                input: input.to_vec(),
            });
        }
        report.failures.len() < MAX_FAILURES
    };
    let pools: Vec<&[Seed]> = pools.iter().copied().filter(|p| !p.is_empty()).collect();
    for s in pools.iter().flat_map(|p| p.iter()) {
        if !check(&mut report, &s.data, &|| format!("input {}", s.name)) {
            break;
        }
    }
    let mut rng = Rng::new(budget.seed);
    let empty = Seed {
        name: "(empty)".into(),
        data: Vec::new(),
    };
    for i in 0..budget.mutants {
        if report.failures.len() >= MAX_FAILURES {
            break;
        }
        if i % 1024 == 0 && budget.time.is_some_and(|t| start.elapsed() >= t) {
            break;
        }
        let pick = |rng: &mut Rng| {
            let pool = pools
                .get(rng.below(pools.len()))
                .copied()
                .unwrap_or_default();
            pool.get(rng.below(pool.len())).unwrap_or(&empty)
        };
        let base = pick(&mut rng);
        let other = pick(&mut rng);
        let m = mutate(&mut rng, &base.data, &other.data);
        check(&mut report, &m, &|| {
            format!("mutant {i} of {} (--seed {})", base.name, budget.seed)
        });
    }
    report.elapsed = start.elapsed();
    report
}

impl Report {
    /// Every failure with its input in hex, and how to keep it as a regression input.
    /// Inputs are also written to `save_dir` (when given) so they can be copied.
    pub fn describe(&self, save_dir: Option<&Path>) -> String {
        let mut s = format!(
            "{}: {} executions in {:.1} s, {} panic(s)\n",
            self.target,
            self.executions,
            self.elapsed.as_secs_f64(),
            self.failures.len()
        );
        for (i, f) in self.failures.iter().enumerate() {
            let _ = writeln!(
                s,
                "--- {} panicked on {}: {}",
                self.target, f.origin, f.message
            );
            if let Some(path) = save_dir.and_then(|d| save(d, self.target, i, &f.input).ok()) {
                let _ = writeln!(
                    s,
                    "    saved to {p}; keep it with: cp {p} fuzz/regressions/{}/",
                    self.target,
                    p = path.display()
                );
            }
            let _ = writeln!(s, "    input ({} bytes): {}", f.input.len(), hex(&f.input));
        }
        s
    }
}

fn save(dir: &Path, target: &str, i: usize, input: &[u8]) -> io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join(format!("{target}-crash-{i}-{}.bin", fnv(input)));
    std::fs::write(&path, input)?;
    Ok(path)
}

/// FNV-1a, to give saved inputs stable, distinct names.
fn fnv(bytes: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The committed regression inputs of `target`: every file in `fuzz/regressions/<target>/`.
pub fn regressions(target: &str) -> io::Result<Vec<Seed>> {
    read_inputs(
        &Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("regressions")
            .join(target),
    )
}

/// The committed corpus of `target` from the long AFL++ runs, minimised with `afl-cmin`: inputs
/// that reach code the generated seeds do not. One file per target, `fuzz/afl-corpus/<target>.bin`,
/// in the format of [`pack`]; a missing file is an empty corpus.
pub fn afl_corpus(target: &str) -> io::Result<Vec<Seed>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("afl-corpus")
        .join(format!("{target}.bin"));
    match std::fs::read(&path) {
        Ok(packed) => unpack(&packed).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{} is not a packed corpus", path.display()),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(e),
    }
}

/// Packs inputs into one byte string: for each, its length as a 4-byte little-endian number, then
/// its bytes. (Thousands of tiny corpus files would swamp the repository.)
pub fn pack(inputs: &[Seed]) -> Vec<u8> {
    let mut out = Vec::new();
    for s in inputs {
        let len = u32::try_from(s.data.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&s.data[..len as usize]);
    }
    out
}

/// The inputs of a [`pack`]ed corpus, named `afl-<index>`; `None` if it is cut short.
pub fn unpack(mut packed: &[u8]) -> Option<Vec<Seed>> {
    let mut out = Vec::new();
    while !packed.is_empty() {
        let (len, rest) = packed.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
        let data = rest.get(..len)?;
        out.push(Seed {
            name: format!("afl-{}", out.len()),
            data: data.to_vec(),
        });
        packed = &rest[len..];
    }
    Some(out)
}

/// Every file in `dir` (sorted by name) as an input; a missing directory has none.
pub fn read_inputs(dir: &Path) -> io::Result<Vec<Seed>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e?;
        if e.file_type()?.is_file() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "README.md" {
                continue;
            }
            out.push(Seed {
                name,
                data: std::fs::read(e.path())?,
            });
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaks_on_0x42(data: &[u8]) {
        assert!(!data.contains(&0x42), "found the byte");
    }

    #[test]
    fn a_panic_is_caught_and_reported_with_its_input() {
        let t = Target {
            name: "toy",
            about: "panics on 0x42",
            run: breaks_on_0x42,
        };
        let inputs = vec![Seed {
            name: "s".into(),
            data: vec![0x40, 0x41, 0x43],
        }];
        let budget = Budget {
            mutants: 100_000,
            time: None,
            seed: 1,
        };
        let r = run_target(&t, &[&inputs], budget);
        assert!(!r.failures.is_empty(), "the mutator never produced 0x42");
        assert!(r.failures.len() <= MAX_FAILURES);
        assert!(r.failures.iter().all(|f| f.input.contains(&0x42)));
        let dir = tempfile::tempdir().unwrap();
        let text = r.describe(Some(dir.path()));
        assert!(text.contains("found the byte"), "{text}");
        assert!(text.contains(&hex(&r.failures[0].input)), "{text}");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            r.failures.len()
        );
        // The same seed finds the same inputs.
        assert_eq!(run_target(&t, &[&inputs], budget).failures, r.failures);
    }

    #[test]
    fn a_clean_target_runs_the_whole_budget() {
        let t = Target {
            name: "ok",
            about: "never panics",
            run: |_| {},
        };
        let budget = Budget {
            mutants: 500,
            time: None,
            seed: 2,
        };
        let r = run_target(&t, &[&[]], budget);
        assert_eq!(r.executions, 500);
        assert!(r.failures.is_empty());
    }

    #[test]
    fn packed_corpora_round_trip_and_every_committed_one_unpacks() {
        let inputs: Vec<Seed> = [&b""[..], b"a", &[7u8; 300]]
            .iter()
            .enumerate()
            .map(|(i, d)| Seed {
                name: format!("afl-{i}"),
                data: d.to_vec(),
            })
            .collect();
        let packed = pack(&inputs);
        assert_eq!(unpack(&packed).unwrap(), inputs);
        assert_eq!(unpack(&packed[..packed.len() - 1]), None);
        for t in &crate::TARGETS {
            afl_corpus(t.name).unwrap();
        }
    }

    #[test]
    fn inputs_are_read_sorted_and_a_missing_dir_is_empty() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("b"), b"2").unwrap();
        std::fs::write(dir.path().join("a"), b"1").unwrap();
        std::fs::write(dir.path().join(".gitkeep"), b"").unwrap();
        let got = read_inputs(dir.path()).unwrap();
        assert_eq!(
            got.iter().map(|s| s.name.as_str()).collect::<Vec<_>>(),
            ["a", "b"]
        );
        assert!(read_inputs(&dir.path().join("none")).unwrap().is_empty());
    }
}
