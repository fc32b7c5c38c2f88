//! AFL++ harness: `cairn-fuzz-afl TARGET` fuzzes one entry point of `cairn-fuzz` in AFL's
//! persistent mode. A panic (a decoder bug or a broken round trip) aborts, which AFL records
//! as a crash. See `fuzz/README.md`.

fn main() {
    let name = std::env::args().nth(1).unwrap_or_default();
    let Some(target) = cairn_fuzz::by_name(&name) else {
        let names: Vec<&str> = cairn_fuzz::TARGETS.iter().map(|t| t.name).collect();
        eprintln!(
            "usage: cairn-fuzz-afl TARGET   (one of: {})",
            names.join(" ")
        );
        std::process::exit(2);
    };
    afl::fuzz!(|data: &[u8]| {
        (target.run)(data);
    });
}
