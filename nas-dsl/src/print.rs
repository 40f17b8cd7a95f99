//! The canonical printer: one text per architecture (arguments in a fixed order,
//! defaults omitted, four-space indentation, one statement per line), so that
//! `parse(print(n)) == n` and equal texts mean equal architectures.

use crate::ast::*;
use std::fmt::Write;

/// Prints every net of a file, separated by a blank line.
pub fn print_file(file: &File) -> String {
    let mut out = String::new();
    for (i, net) in file.nets.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        out.push_str(&print(net));
    }
    out
}

/// Prints one net in canonical form, ending with a newline.
pub fn print(net: &Net) -> String {
    let mut out = String::with_capacity(1024);
    for doc in &net.docs {
        for line in doc.split('\n') {
            let _ = writeln!(out, "///{line}");
        }
    }
    let dims: Vec<String> = net.input.value.iter().map(u64::to_string).collect();
    let _ = writeln!(
        out,
        "{}net {}(input = [{}], classes = {}) {{",
        if net.public { "pub " } else { "" },
        net.name.text,
        dims.join(", "),
        net.classes.value
    );
    block(&mut out, &net.body, 1);
    out.push_str("}\n");
    out
}

fn indent(out: &mut String, depth: usize) {
    for _ in 0..depth {
        out.push_str("    ");
    }
}

fn block(out: &mut String, stmts: &[Stmt], depth: usize) {
    for s in stmts {
        indent(out, depth);
        if let Some(name) = &s.name {
            let _ = write!(out, "{}: ", name.text);
        }
        match &s.node {
            Node::Layer(l) => {
                write_layer(out, l);
                out.push_str(";\n");
            }
            Node::Residual { body, shortcut } => {
                out.push_str("residual {\n");
                block(out, body, depth + 1);
                indent(out, depth);
                out.push('}');
                if let Some(sc) = shortcut {
                    out.push_str(" shortcut {\n");
                    block(out, sc, depth + 1);
                    indent(out, depth);
                    out.push('}');
                }
                out.push('\n');
            }
            Node::Concat { branches } => {
                out.push_str("concat {\n");
                for b in branches {
                    indent(out, depth + 1);
                    out.push_str("branch {\n");
                    block(out, b, depth + 2);
                    indent(out, depth + 1);
                    out.push_str("}\n");
                }
                indent(out, depth);
                out.push_str("}\n");
            }
        }
    }
}

/// Prints one layer without its name or `;`, e.g. `conv(3 -> 32, k = 3, pad = 1)`.
pub fn layer(l: &Layer) -> String {
    let mut out = String::new();
    write_layer(&mut out, l);
    out
}

/// An argument list being written: `(` before the first argument, `, ` between.
struct ArgList<'a> {
    out: &'a mut String,
    open: bool,
}

impl ArgList<'_> {
    fn next(&mut self) -> &mut String {
        self.out.push_str(if self.open { ", " } else { "(" });
        self.open = true;
        self.out
    }

    fn opt(&mut self, name: &str, value: u64, default: u64) {
        if value != default {
            let out = self.next();
            out.push_str(name);
            out.push_str(" = ");
            push_u64(out, value);
        }
    }

    fn finish(self) {
        if self.open {
            self.out.push(')');
        }
    }
}

/// Appends `n` in decimal (without the formatting machinery: this is on the
/// mutator's hot path).
pub(crate) fn push_u64(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for &d in &digits[i..] {
        out.push(char::from(d));
    }
}

/// Appends `a -> b`.
fn arrow(out: &mut String, a: u64, b: u64) {
    push_u64(out, a);
    out.push_str(" -> ");
    push_u64(out, b);
}

/// Appends one layer to `out` (written in place: the printer is on the
/// mutator's hot path).
fn write_layer(out: &mut String, l: &Layer) {
    out.push_str(l.keyword());
    let mut args = ArgList { out, open: false };
    match l {
        Layer::Conv(c) => {
            arrow(args.next(), c.in_ch.value, c.out_ch.value);
            args.opt("k", c.k.value, 0);
            args.opt("stride", c.stride.value, 1);
            args.opt("pad", c.pad.value, 0);
            args.opt("groups", c.groups.value, 1);
            args.opt("dilation", c.dilation.value, 1);
            if !c.bias.value {
                args.next().push_str("bias = false");
            }
        }
        Layer::Linear(li) => {
            arrow(args.next(), li.in_f.value, li.out_f.value);
            if !li.bias.value {
                args.next().push_str("bias = false");
            }
        }
        Layer::Pool(p) => {
            args.opt("k", p.k.value, 0);
            args.opt("stride", p.stride.value, p.k.value);
            args.opt("pad", p.pad.value, 0);
        }
        Layer::Dropout(p) => {
            let _ = write!(args.next(), "p = {:?}", p.value);
        }
        Layer::Bn | Layer::Act(_) | Layer::Gap | Layer::Flatten => {}
    }
    args.finish();
}
