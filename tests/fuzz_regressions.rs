//! Replays the fuzz corpus (`fuzz/corpus/api_sequence`) and every input that
//! once crashed (`fuzz/regressions`) through the fuzz target's interpreter.

#[path = "../fuzz/ops.rs"]
mod ops;

fn replay(dir: &str) -> usize {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
    let Ok(entries) = std::fs::read_dir(&path) else {
        return 0;
    };
    let mut files: Vec<_> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    files.sort();
    for file in &files {
        let data = std::fs::read(file).expect("readable input");
        ops::run(&data);
    }
    files.len()
}

#[test]
fn fuzz_corpus_and_regressions_hold() {
    let n = replay("fuzz/corpus/api_sequence") + replay("fuzz/regressions");
    assert!(n > 0, "no fuzz inputs found");
}
