//! Times the Data.fs operations the `cut` command relies on, on one file.
//!
//! Usage: `datafs_bench PATH TID_NEAR_END TID_MIDDLE` (decimal or hex TIDs).
//! Prints one line per operation: name, seconds, answer.

use std::path::Path;
use std::time::Instant;

use tidstorage::datafs::DataFs;
use tidstorage::tid::Tid;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.len() != 3 {
        eprintln!("usage: datafs_bench PATH TID_NEAR_END TID_MIDDLE");
        std::process::exit(2);
    }
    let tid = |s: &str| -> Tid {
        s.parse().unwrap_or_else(|e| {
            eprintln!("datafs_bench: {e}");
            std::process::exit(2)
        })
    };
    let (near_end, middle) = (tid(&args[1]), tid(&args[2]));
    let fs = DataFs::open(Path::new(&args[0])).unwrap_or_else(|e| {
        eprintln!("datafs_bench: {e}");
        std::process::exit(1)
    });
    let time = |name: &str, f: &dyn Fn() -> String| {
        let t = Instant::now();
        let answer = f();
        println!("{name} {:.6} {answer}", t.elapsed().as_secs_f64());
    };
    let cut = |t: Tid, forward: bool| -> String {
        let r = if forward {
            fs.cut_forward(t)
        } else {
            fs.cut_position(t)
        };
        match r {
            Ok(c) => format!("{} {:?}", c.position, c.walk),
            Err(e) => format!("error: {e}"),
        }
    };
    time("cut_near_end", &|| cut(near_end, false));
    time("cut_middle", &|| cut(middle, false));
    time("cut_near_end_forward", &|| cut(near_end, true));
    time("verify", &|| match fs.verify(&mut |_, _| {}) {
        Ok(r) => format!("{} transactions", r.transactions),
        Err(e) => format!("error: {e}"),
    });
}
