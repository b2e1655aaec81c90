//! `cargo run -p rampart-rules --example check -- FILES...`: loads rule files (the default rules
//! when none are given) and prints the report, like `rampart rules check`.
fn main() {
    let mut loader = rampart_rules::Loader::new();
    let files: Vec<String> = std::env::args().skip(1).collect();
    let result = if files.is_empty() {
        loader.add_default_rules()
    } else {
        files.iter().try_for_each(|f| loader.add_file(f))
    };
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(2);
    }
    match loader.compile(rampart_rules::Options::default()) {
        Ok(rules) => {
            let r = rules.report();
            println!("{} rules ({} enabled), {} macros, {} lists", r.rules, r.enabled_rules, r.macros, r.lists);
            for c in &r.cannot_fire {
                println!("{c}");
            }
            for w in &r.warnings {
                println!("warning: {w}");
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
}
