//! The per-layer summary of a checked net: name, kind, output shape, parameters
//! and FLOPs, with totals, as a text table or a serialisable value.

use crate::graph::CheckedNet;
use serde::Serialize;
use std::fmt::Write;

/// One row of the summary.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Row {
    /// Layer name.
    pub name: String,
    /// Layer or block keyword.
    pub kind: String,
    /// Block nesting depth.
    pub depth: usize,
    /// Output shape, batch left out.
    pub output: Vec<u64>,
    /// Learnable parameters (PyTorch's count).
    pub params: u64,
    /// Multiply-accumulates per sample.
    pub flops: u64,
}

/// A net's summary.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Summary {
    /// Net name.
    pub net: String,
    /// Input shape.
    pub input: Vec<u64>,
    /// Output shape.
    pub output: Vec<u64>,
    /// One row per statement, in source order.
    pub layers: Vec<Row>,
    /// Total parameters.
    pub params: u64,
    /// Total multiply-accumulates per sample.
    pub flops: u64,
    /// Training memory per sample of the batch, in bytes (the model of
    /// [`crate::memory`]).
    pub memory_per_sample: u64,
    /// Training memory independent of the batch, in bytes.
    pub memory_fixed: u64,
}

/// Builds the summary of a checked net.
pub fn summarize(net: &CheckedNet) -> Summary {
    Summary {
        net: net.name().to_string(),
        input: net.input().dims(),
        output: net.output().dims(),
        layers: net
            .layers()
            .iter()
            .map(|l| Row {
                name: l.name.clone(),
                kind: l.op.keyword().to_string(),
                depth: l.depth,
                output: l.output_shape().dims(),
                params: l.params,
                flops: l.flops,
            })
            .collect(),
        params: net.params(),
        flops: net.flops(),
        memory_per_sample: net.training_memory().per_sample,
        memory_fixed: net.training_memory().fixed,
    }
}

/// Groups digits in threes: `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, ch) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn dims(d: &[u64]) -> String {
    let parts: Vec<String> = d.iter().map(u64::to_string).collect();
    format!("[{}]", parts.join(", "))
}

impl Summary {
    /// Renders the summary as an aligned text table.
    pub fn table(&self) -> String {
        let mut rows: Vec<[String; 5]> = vec![[
            "layer".into(),
            "kind".into(),
            "output".into(),
            "params".into(),
            "flops".into(),
        ]];
        rows.push([
            "input".into(),
            String::new(),
            dims(&self.input),
            String::new(),
            String::new(),
        ]);
        for r in &self.layers {
            rows.push([
                format!("{}{}", "  ".repeat(r.depth), r.name),
                r.kind.clone(),
                dims(&r.output),
                thousands(r.params),
                thousands(r.flops),
            ]);
        }
        rows.push([
            "total".into(),
            String::new(),
            dims(&self.output),
            thousands(self.params),
            thousands(self.flops),
        ]);
        let mut width = [0usize; 5];
        for r in &rows {
            for (w, cell) in width.iter_mut().zip(r) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let mut out = format!("{}\n", self.net);
        for (i, r) in rows.iter().enumerate() {
            if i == 1 || i == rows.len() - 1 {
                let total: usize = width.iter().sum::<usize>() + 8;
                let _ = writeln!(out, "{}", "-".repeat(total));
            }
            let _ = writeln!(
                out,
                "{:<w0$}  {:<w1$}  {:<w2$}  {:>w3$}  {:>w4$}",
                r[0],
                r[1],
                r[2],
                r[3],
                r[4],
                w0 = width[0],
                w1 = width[1],
                w2 = width[2],
                w3 = width[3],
                w4 = width[4]
            );
        }
        let memory = crate::memory::Memory {
            per_sample: self.memory_per_sample,
            fixed: self.memory_fixed,
        };
        let _ = writeln!(
            out,
            "training memory: {} per sample + {} (batch 32: {}, batch 128: {})",
            crate::memory::bytes(memory.per_sample),
            crate::memory::bytes(memory.fixed),
            crate::memory::bytes(memory.at_batch(32)),
            crate::memory::bytes(memory.at_batch(128)),
        );
        out
    }
}
