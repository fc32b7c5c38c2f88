//! `cairn-fuzz`: writes the seed corpora, runs the bounded mutation run for longer than CI
//! does, and replays inputs (AFL's crashes, regression files) through a target.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use cairn_fuzz::{
    afl_corpus, by_name, read_inputs, regressions, run_one, run_target, seeds, Budget, TARGETS,
};

const USAGE: &str = "\
usage:
  cairn-fuzz seeds DIR
      write every target's generated seeds and committed corpus to DIR/<target>/ (AFL's inputs)
  cairn-fuzz run [TARGET...] [--mutants N] [--seconds S] [--seed S]
      seeds, committed corpus and regression inputs, then N mutants per target (default 1000000); exits 1 on a panic
  cairn-fuzz pack TARGET DIR
      pack every file in DIR (e.g. afl-cmin output) into fuzz/afl-corpus/TARGET.bin
  cairn-fuzz replay TARGET PATH...
      run TARGET on each file (or each file in each directory); exits 1 if any panics
targets: dag_pb unixfs car bitswap cid_path ipns_record";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("seeds") if args.len() == 2 => write_seeds(Path::new(&args[1])),
        Some("run") => run(&args[1..]),
        Some("pack") if args.len() == 3 => pack(&args[1], Path::new(&args[2])),
        Some("replay") if args.len() >= 3 => replay(&args[1], &args[2..]),
        _ => Err(USAGE.to_string()),
    };
    match result {
        Ok(code) => code,
        Err(msg) => {
            eprintln!("cairn-fuzz: {msg}");
            ExitCode::from(2)
        }
    }
}

fn write_seeds(dir: &Path) -> Result<ExitCode, String> {
    let mut corpora = seeds::generate().map_err(|e| format!("cannot generate the seeds: {e}"))?;
    for (target, s) in corpora.iter_mut() {
        s.extend(afl_corpus(target).map_err(|e| format!("cannot read the committed corpus: {e}"))?);
    }
    let n = seeds::write(&corpora, dir)
        .map_err(|e| format!("cannot write the seeds under {}: {e}", dir.display()))?;
    for (target, s) in &corpora {
        println!("{target}: {} seeds", s.len());
    }
    println!("wrote {n} seed files under {}", dir.display());
    Ok(ExitCode::SUCCESS)
}

fn number(flag: &str, value: Option<&String>) -> Result<u64, String> {
    value
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| format!("{flag} needs a whole number\n{USAGE}"))
}

fn run(args: &[String]) -> Result<ExitCode, String> {
    let mut budget = Budget {
        mutants: 1_000_000,
        time: None,
        seed: 1,
    };
    let mut names = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--mutants" => budget.mutants = number(a, it.next())?,
            "--seconds" => budget.time = Some(Duration::from_secs(number(a, it.next())?)),
            "--seed" => budget.seed = number(a, it.next())?,
            name => names
                .push(by_name(name).ok_or_else(|| format!("unknown target {name:?}\n{USAGE}"))?),
        }
    }
    if names.is_empty() {
        names = TARGETS.iter().collect();
    }
    let corpora = seeds::generate().map_err(|e| format!("cannot generate the seeds: {e}"))?;
    let save_dir = std::env::temp_dir().join("cairn-fuzz-failures");
    let mut failed = false;
    for t in names {
        let seeds = corpora.get(t.name).cloned().unwrap_or_default();
        let corpus =
            afl_corpus(t.name).map_err(|e| format!("cannot read the committed corpus: {e}"))?;
        let regressions =
            regressions(t.name).map_err(|e| format!("cannot read the regression inputs: {e}"))?;
        let report = run_target(t, &[&seeds, &corpus, &regressions], budget);
        print!("{}", report.describe(Some(&save_dir)));
        failed |= !report.failures.is_empty();
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn pack(name: &str, dir: &Path) -> Result<ExitCode, String> {
    let t = by_name(name).ok_or_else(|| format!("unknown target {name:?}\n{USAGE}"))?;
    let inputs = read_inputs(dir).map_err(|e| format!("cannot read {}: {e}", dir.display()))?;
    let out = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("afl-corpus")
        .join(format!("{}.bin", t.name));
    let packed = cairn_fuzz::pack(&inputs);
    std::fs::create_dir_all(out.parent().unwrap_or(Path::new(".")))
        .and_then(|()| std::fs::write(&out, &packed))
        .map_err(|e| format!("cannot write {}: {e}", out.display()))?;
    println!(
        "{}: {} inputs, {} bytes -> {}",
        t.name,
        inputs.len(),
        packed.len(),
        out.display()
    );
    Ok(ExitCode::SUCCESS)
}

fn replay(name: &str, paths: &[String]) -> Result<ExitCode, String> {
    let t = by_name(name).ok_or_else(|| format!("unknown target {name:?}\n{USAGE}"))?;
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    for p in paths.iter().map(PathBuf::from) {
        if p.is_dir() {
            let inputs =
                read_inputs(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            files.extend(inputs.into_iter().map(|s| (p.join(s.name), s.data)));
        } else {
            let data =
                std::fs::read(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            files.push((p, data));
        }
    }
    let mut panics = 0;
    for (path, data) in &files {
        if let Err(msg) = run_one(t, data) {
            panics += 1;
            println!(
                "PANIC {}: {msg}\n    input: {}",
                path.display(),
                cairn_fuzz::hex(data)
            );
        }
    }
    println!("{}: {} inputs, {panics} panicked", t.name, files.len());
    Ok(if panics > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
