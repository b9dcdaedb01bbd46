//! Reading a fuzz input as a sequence of chunks, shared by the targets
//! that build well-formed frames or requests around fuzzed contents.

/// The stream read as contents: each a `length` byte, then that many
/// bytes (fewer at the end of the input).
pub fn contents(stream: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = stream;
    std::iter::from_fn(move || {
        let (&n, tail) = rest.split_first()?;
        let (chunk, tail) = tail.split_at(usize::from(n).min(tail.len()));
        rest = tail;
        Some(chunk)
    })
}

/// Byte `i` of `c`, 0 past its end.
pub fn at(c: &[u8], i: usize) -> u8 {
    c.get(i).copied().unwrap_or(0)
}
