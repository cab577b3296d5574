// Torture 8: a Rust program. 8 threads send 10,000 boxed strings each over a channel to a
// consumer thread that drops them (allocated in one thread, freed in another).
use std::sync::mpsc;
use std::thread;

fn main() {
    let (tx, rx) = mpsc::channel::<Box<String>>();
    let consumer = thread::spawn(move || rx.iter().map(|s| s.len()).sum::<usize>());
    let producers: Vec<_> = (0..8)
        .map(|t| {
            let tx = tx.clone();
            thread::spawn(move || {
                for i in 0..10_000 {
                    tx.send(Box::new(format!("thread {t} item {i}"))).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    for p in producers {
        p.join().unwrap();
    }
    println!("rust: {} bytes received", consumer.join().unwrap());
}
