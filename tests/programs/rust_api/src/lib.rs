//! A small library and its tests, which check their memory with memlens-api. Under
//! `memlens check`: `within_its_limit` passes, `leaks_a_buffer` makes check fail naming
//! `leak_buffer`'s allocation. Without memlens both pass.

/// Split `s` into fields (allocates, frees everything it does not return).
pub fn parse(s: &str) -> Vec<String> {
    s.split(',').map(|f| f.trim().to_string()).collect()
}

/// Forget a 4096-byte buffer: a leak.
#[inline(never)]
pub fn leak_buffer() {
    std::mem::forget(std::hint::black_box(vec![7u8; 4096]));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_its_limit() {
        let mark = memlens_api::mark();
        {
            let _g = memlens_api::region("parse");
            let fields = parse("a, b, c");
            assert_eq!(fields, ["a", "b", "c"]);
        }
        memlens_api::assert_no_leaks_since(mark, "within_its_limit frees everything");
        memlens_api::assert_max_live(16 << 20, "within_its_limit under 16 MiB");
    }

    #[test]
    fn leaks_a_buffer() {
        let mark = memlens_api::mark();
        leak_buffer();
        memlens_api::assert_no_leaks_since(mark, "leaks_a_buffer frees everything");
    }
}
