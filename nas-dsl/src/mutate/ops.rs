//! The mutation operators: pure functions from a parent architecture and a random
//! source to a re-checked mutant (or `None` when the operator does not apply to
//! this parent). Width operators rewrite classes through
//! [`WidthClasses::apply`](super::WidthClasses::apply);
//! structural operators edit the syntax tree where the edit provably keeps every
//! shape downstream unchanged.

use super::values::ValueSet;
use super::{Arch, MutateError, Mutated, Mutation};
use crate::ast::{Block, Layer, Net, Node, Stmt};
use crate::graph::Op;
use crate::span::Spanned;
use rand_core::Rng;

/// Nets with this many statements are not grown further by `duplicate`.
pub const MAX_STATEMENTS: usize = 256;

/// The largest kernel `kernel` writes.
pub const MAX_KERNEL: u64 = 11;

/// A uniform integer in `0..n` (`n > 0`), by multiply-shift: the bias is below
/// `n / 2^64`, and the mapping depends only on the generator's output, so a seed
/// gives the same mutants whatever `rand` version is in use.
pub(crate) fn below<R: Rng + ?Sized>(rng: &mut R, n: u64) -> u64 {
    ((u128::from(rng.next_u64()) * u128::from(n)) >> 64) as u64
}

/// A uniform float in `[0, 1)`.
pub(crate) fn unit<R: Rng + ?Sized>(rng: &mut R) -> f64 {
    (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64
}

fn pick<'a, T, R: Rng + ?Sized>(rng: &mut R, items: &'a [T]) -> Option<&'a T> {
    if items.is_empty() {
        return None;
    }
    items.get(below(rng, items.len() as u64) as usize)
}

/// Re-checks a mutant; a failure is a bug in the mutator and is returned as such.
pub(crate) fn recheck(net: Net, mutation: Mutation) -> Result<Mutated, MutateError> {
    match crate::check_owned(net) {
        Ok(checked) => Ok(Mutated {
            net: checked,
            mutation,
            classes: None,
        }),
        Err(failed) => Err(MutateError::Invalid {
            mutation: mutation.to_string(),
            errors: failed.1.to_string(),
            text: crate::print(&failed.0),
        }),
    }
}

fn with_widths(
    parent: &Arch,
    widths: &[u64],
    mutation: Mutation,
) -> Result<Option<Mutated>, MutateError> {
    let classes = parent.classes();
    let net = classes.apply(parent.net().net(), widths)?;
    let mut mutant = recheck(net, mutation)?;
    mutant.classes = classes.with_widths(widths);
    Ok(Some(mutant))
}

/// Sets one width class to a new width drawn uniformly from the widths it may take
/// under `set` (its current width excluded). `None` if no class can change.
pub fn set_class<R: Rng + ?Sized>(
    parent: &Arch,
    set: &ValueSet,
    rng: &mut R,
) -> Result<Option<Mutated>, MutateError> {
    let classes = parent.classes().classes();
    let movable: Vec<usize> = classes
        .iter()
        .filter(|c| {
            let g = c.grid(set);
            g.count > 1 || (g.count == 1 && !g.contains(c.width))
        })
        .map(|c| c.id)
        .collect();
    let Some(&id) = pick(rng, &movable) else {
        return Ok(None);
    };
    let class = &classes[id];
    let grid = class.grid(set);
    // Draw among the other widths: skip over the current one if it is on the grid.
    let to = if grid.contains(class.width) {
        let i = below(rng, grid.count - 1);
        let w = grid.nth(i);
        if w >= class.width { grid.nth(i + 1) } else { w }
    } else {
        grid.nth(below(rng, grid.count))
    };
    let mut widths = parent.classes().widths();
    widths[id] = to;
    let mutation = Mutation::SetClass {
        class: id,
        label: class.label().to_string(),
        from: class.width,
        to,
    };
    with_widths(parent, &widths, mutation)
}

/// Scales every class by one factor (log-uniform in `[1/2, 2]`, at least 10% away
/// from 1), each rounded to the nearest width it may take. `None` if rounding
/// leaves every class where it was.
pub fn scale<R: Rng + ?Sized>(
    parent: &Arch,
    set: &ValueSet,
    rng: &mut R,
) -> Result<Option<Mutated>, MutateError> {
    let lo = 1.1f64.log2();
    let mut exponent = lo + (1.0 - lo) * unit(rng);
    if below(rng, 2) == 0 {
        exponent = -exponent;
    }
    let factor = (exponent.exp2() * 100.0).round() / 100.0;
    let classes = parent.classes();
    let mut widths = classes.widths();
    let mut changed = 0;
    for (c, w) in classes.classes().iter().zip(widths.iter_mut()) {
        if let Some(new) = c.grid(set).nearest(c.width as f64 * factor)
            && new != *w
        {
            *w = new;
            changed += 1;
        }
    }
    if changed == 0 {
        return Ok(None);
    }
    with_widths(parent, &widths, Mutation::Scale { factor, changed })
}

/// Number of statements in a statement's subtree, itself included.
fn size(stmt: &Stmt) -> usize {
    1 + match &stmt.node {
        Node::Layer(_) => 0,
        Node::Residual { body, shortcut } => {
            block_size(body) + shortcut.as_deref().map_or(0, block_size)
        }
        Node::Concat { branches } => branches.iter().map(|b| block_size(b)).sum(),
    }
}

fn block_size(block: &[Stmt]) -> usize {
    block.iter().map(size).sum()
}

/// The block holding the statement with pre-order index `target` (the index of
/// its row in the checked table), and its position there.
fn locate(block: &mut Block, target: usize) -> Option<(&mut Block, usize)> {
    let mut at = 0;
    let mut inside = None;
    for (i, s) in block.iter().enumerate() {
        if at == target {
            return Some((block, i));
        }
        let n = size(s);
        if target < at + n {
            inside = Some((i, at + 1));
            break;
        }
        at += n;
    }
    let (i, mut start) = inside?;
    match &mut block[i].node {
        Node::Layer(_) => None,
        Node::Residual { body, shortcut } => {
            let n = block_size(body);
            if target < start + n {
                return locate(body, target - start);
            }
            start += n;
            locate(shortcut.as_mut()?, target - start)
        }
        Node::Concat { branches } => {
            for b in branches {
                let n = block_size(b);
                if target < start + n {
                    return locate(b, target - start);
                }
                start += n;
            }
            None
        }
    }
}

/// For every statement in pre-order, the length of the block that holds it.
fn block_lengths(block: &[Stmt], out: &mut Vec<usize>) {
    for s in block {
        out.push(block.len());
        match &s.node {
            Node::Layer(_) => {}
            Node::Residual { body, shortcut } => {
                block_lengths(body, out);
                if let Some(sc) = shortcut {
                    block_lengths(sc, out);
                }
            }
            Node::Concat { branches } => {
                for b in branches {
                    block_lengths(b, out);
                }
            }
        }
    }
}

/// Drops every written name in a copied subtree, so names stay unique.
fn strip_names(block: &mut [Stmt]) {
    for s in block {
        s.name = None;
        match &mut s.node {
            Node::Layer(_) => {}
            Node::Residual { body, shortcut } => {
                strip_names(body);
                if let Some(sc) = shortcut {
                    strip_names(sc);
                }
            }
            Node::Concat { branches } => branches.iter_mut().for_each(|b| strip_names(b)),
        }
    }
}

/// Whether a statement keeps its input's shape elementwise (so it can follow a
/// copy of the statement before it unchanged).
fn elementwise(stmt: &Stmt) -> bool {
    matches!(
        stmt.node,
        Node::Layer(Layer::Bn | Layer::Act(_) | Layer::Dropout(_))
    )
}

/// Duplicates a shape-preserving conv, residual or concat (with the bn,
/// activations and dropout right after it): the copy sees the same shape the
/// original produces, so nothing downstream changes. Names are not copied.
pub fn duplicate<R: Rng + ?Sized>(
    parent: &Arch,
    rng: &mut R,
) -> Result<Option<Mutated>, MutateError> {
    let rows = parent.net().layers();
    if rows.len() >= MAX_STATEMENTS {
        return Ok(None);
    }
    let candidates: Vec<usize> = rows
        .iter()
        .enumerate()
        .filter(|(_, r)| {
            matches!(r.op, Op::Layer(Layer::Conv(_)) | Op::Residual | Op::Concat)
                && r.input == r.output
        })
        .map(|(i, _)| i)
        .collect();
    let Some(&row) = pick(rng, &candidates) else {
        return Ok(None);
    };
    let mut net = parent.net().net().clone();
    let Some((block, pos)) = locate(&mut net.body, row) else {
        return Ok(None);
    };
    let end = run_end(block, pos);
    let mut copy: Vec<Stmt> = block[pos..end].to_vec();
    strip_names(&mut copy);
    let statements = copy.len();
    block.splice(end..end, copy);
    let mutation = Mutation::Duplicate {
        layer: rows[row].name.clone(),
        statements,
    };
    recheck(net, mutation).map(Some)
}

/// The end (exclusive) of the run starting at `pos`: a conv or block takes the
/// bn, activations and dropout right after it along.
fn run_end(block: &[Stmt], pos: usize) -> usize {
    let mut end = pos + 1;
    let leads = block.get(pos).is_some_and(|s| {
        matches!(
            s.node,
            Node::Layer(Layer::Conv(_)) | Node::Residual { .. } | Node::Concat { .. }
        )
    });
    if leads {
        while block.get(end).is_some_and(elementwise) {
            end += 1;
        }
    }
    end
}

/// Removes a statement that keeps its input's shape (an activation, bn, dropout,
/// a width-preserving conv or block; a conv or block with the elementwise layers
/// after it, mirroring `duplicate`), never emptying a block.
pub fn remove<R: Rng + ?Sized>(parent: &Arch, rng: &mut R) -> Result<Option<Mutated>, MutateError> {
    let rows = parent.net().layers();
    let mut lengths = Vec::with_capacity(rows.len());
    block_lengths(&parent.net().net().body, &mut lengths);
    let candidates: Vec<usize> = rows
        .iter()
        .zip(&lengths)
        .enumerate()
        .filter(|(_, (r, len))| r.input == r.output && **len > 1)
        .map(|(i, _)| i)
        .collect();
    let Some(&row) = pick(rng, &candidates) else {
        return Ok(None);
    };
    let mut net = parent.net().net().clone();
    let Some((block, pos)) = locate(&mut net.body, row) else {
        return Ok(None);
    };
    let mut end = run_end(block, pos);
    if end - pos == block.len() {
        end = pos + 1;
    }
    block.drain(pos..end);
    let mutation = Mutation::Remove {
        layer: rows[row].name.clone(),
        statements: end - pos,
    };
    recheck(net, mutation).map(Some)
}

/// The kernels a conv may switch to with padding `pad + dilation·(k' − k)/2`:
/// that keeps `H + 2·pad − dilation·(k − 1)` and so the output size, for any
/// input size and stride. Padding stays below the kernel.
fn kernel_options(k: u64, pad: u64, dilation: u64) -> Vec<(u64, u64)> {
    let mut out = Vec::new();
    for new in [k.wrapping_sub(4), k.wrapping_sub(2), k + 2, k + 4] {
        if new == 0 || new > MAX_KERNEL {
            continue;
        }
        let new_pad = if new > k {
            dilation
                .checked_mul((new - k) / 2)
                .and_then(|d| pad.checked_add(d))
        } else {
            dilation
                .checked_mul((k - new) / 2)
                .and_then(|d| pad.checked_sub(d))
        };
        if let Some(p) = new_pad.filter(|&p| p < new) {
            out.push((new, p));
        }
    }
    out
}

/// Changes one conv's kernel size by ±2 or ±4, adjusting its padding so the
/// spatial size it produces stays the same.
pub fn kernel<R: Rng + ?Sized>(parent: &Arch, rng: &mut R) -> Result<Option<Mutated>, MutateError> {
    let rows = parent.net().layers();
    let candidates: Vec<(usize, u64, u64, u64)> = rows
        .iter()
        .enumerate()
        .filter_map(|(i, r)| match &r.op {
            Op::Layer(Layer::Conv(c)) => Some((i, c)),
            _ => None,
        })
        .flat_map(|(i, c)| {
            kernel_options(c.k.value, c.pad.value, c.dilation.value)
                .into_iter()
                .map(move |(k, p)| (i, c.k.value, k, p))
        })
        .collect();
    let Some(&(row, from, to, pad)) = pick(rng, &candidates) else {
        return Ok(None);
    };
    let mut net = parent.net().net().clone();
    let Some((block, pos)) = locate(&mut net.body, row) else {
        return Ok(None);
    };
    if let Node::Layer(Layer::Conv(c)) = &mut block[pos].node {
        c.k = Spanned::synthetic(to);
        c.pad = Spanned::synthetic(pad);
    }
    let mutation = Mutation::Kernel {
        layer: rows[row].name.clone(),
        from,
        to,
        pad,
    };
    recheck(net, mutation).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_options_keep_the_window_reach() {
        // H + 2p - d(k-1) is unchanged for every option.
        for (k, p, d) in [(3, 1, 1), (1, 0, 1), (11, 2, 1), (3, 2, 2), (5, 0, 1)] {
            for (k2, p2) in kernel_options(k, p, d) {
                assert_eq!(
                    2 * p2 as i64 - (d * (k2 - 1)) as i64,
                    2 * p as i64 - (d * (k - 1)) as i64
                );
                assert!(p2 < k2 && k2 <= MAX_KERNEL);
            }
        }
        assert_eq!(kernel_options(3, 1, 1), vec![(1, 0), (5, 2), (7, 3)]);
        // Shrinking an unpadded kernel would need negative padding.
        assert_eq!(kernel_options(5, 0, 1), vec![(7, 1), (9, 2)]);
        assert_eq!(kernel_options(11, 0, 1), vec![]);
    }

    #[test]
    fn locate_finds_every_statement() {
        let src = "net N(input = [3, 8, 8], classes = 2) {
            conv(3 -> 4, k = 1);
            residual { relu; concat { branch { bn; } branch { relu; } } } shortcut { bn; }
            gap; linear(8 -> 2);
        }";
        let mut net = crate::parse_str(src).unwrap().nets.remove(0);
        let checked = crate::check(&net);
        assert!(
            checked.is_err(),
            "linear width is wrong on purpose, only the tree matters"
        );
        let keywords = [
            "conv", "residual", "relu", "concat", "bn", "relu", "bn", "gap", "linear",
        ];
        for (i, kw) in keywords.iter().enumerate() {
            let (block, pos) = locate(&mut net.body, i).unwrap();
            assert_eq!(block[pos].node.keyword(), *kw, "row {i}");
        }
        assert!(locate(&mut net.body, keywords.len()).is_none());
        let mut lengths = Vec::new();
        block_lengths(&net.body, &mut lengths);
        assert_eq!(lengths, vec![4, 4, 2, 2, 1, 1, 1, 4, 4]);
    }
}
