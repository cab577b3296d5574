//! Print a trace's records in readable form: `cargo run --example dump -- TRACE [N]`.
use memlens_trace::reader::TraceReader;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(path) = args.get(1) else {
        eprintln!("usage: dump TRACE [MAX_EVENTS]");
        std::process::exit(2);
    };
    let max: usize = args
        .get(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(usize::MAX);
    let r = match TraceReader::open(path) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    };
    println!("{:#?}", r.header());
    if let Some(t) = r.truncation() {
        println!("TRUNCATED: {t:?}");
    }
    match r.metadata() {
        Ok(md) => {
            let mut mods: Vec<_> = md.modules.values().collect();
            mods.sort_by_key(|m| m.id);
            for m in mods {
                println!(
                    "module {} {} bias={:#x} build-id={} unloaded={:?}",
                    m.id,
                    m.path,
                    m.load_bias,
                    m.build_id_hex(),
                    m.unloaded_ns
                );
            }
            let mut st: Vec<_> = md.stacks.iter().collect();
            st.sort_by_key(|s| *s.0);
            for (id, f) in st {
                let fr: Vec<String> = f
                    .iter()
                    .map(|f| format!("{}:{:#x}", f.module, f.offset))
                    .collect();
                println!("stack {id}: {}", fr.join(" "));
            }
            println!("threads: {:?}", md.threads);
            println!("end: {:?}", md.end);
        }
        Err(e) => println!("metadata error: {e}"),
    }
    for (i, e) in r.events().enumerate() {
        if i >= max {
            break;
        }
        match e {
            Ok(e) => println!("{e:?}"),
            Err(e) => {
                println!("error: {e}");
                break;
            }
        }
    }
    for rec in r.scan() {
        match rec {
            Ok(r) => println!("scan {r:?}"),
            Err(e) => {
                println!("scan error: {e}");
                break;
            }
        }
    }
}
