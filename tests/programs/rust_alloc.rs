// A Rust program: 100 leaked boxes of 48 bytes from make_boxes.
#[inline(never)]
fn make_boxes() {
    for i in 0..100u8 {
        let b = Box::new([i; 48]);
        std::mem::forget(b);
    }
}

fn main() {
    make_boxes();
    let v: Vec<String> = (0..10).map(|i| format!("item {i}")).collect();
    println!("rust done {}", v.len());
}
