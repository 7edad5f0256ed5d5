//! Splitting a publish batch into MPUB commands that each fit nsqd's body limit.

/// Splits bodies into runs whose MPUB body fits in `max_body`.
pub(super) fn chunks(bodies: &[Vec<u8>], max_body: usize) -> Vec<&[Vec<u8>]> {
    let mut out = Vec::new();
    let (mut start, mut size) = (0, 4);
    for (i, b) in bodies.iter().enumerate() {
        let add = 4 + b.len();
        if i > start && size + add > max_body {
            out.push(&bodies[start..i]);
            start = i;
            size = 4;
        }
        size += add;
    }
    if start < bodies.len() {
        out.push(&bodies[start..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_split_to_fit_the_body_limit() {
        let bodies = vec![vec![0u8; 100]; 10];
        let c = chunks(&bodies, 4 + 3 * 104);
        assert_eq!(
            c.iter().map(|c| c.len()).collect::<Vec<_>>(),
            vec![3, 3, 3, 1]
        );
        assert_eq!(chunks(&bodies, 1 << 20).len(), 1);
        let huge = vec![vec![0u8; 50]; 1];
        assert_eq!(chunks(&huge, 10).len(), 1, "one message always goes alone");
    }
}
