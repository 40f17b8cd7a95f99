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
    let mut out = String::new();
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
                out.push_str(&layer(l));
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
    let mut args: Vec<String> = Vec::new();
    let mut opt = |name: &str, value: u64, default: u64| {
        if value != default {
            args.push(format!("{name} = {value}"));
        }
    };
    match l {
        Layer::Conv(c) => {
            opt("k", c.k.value, 0);
            opt("stride", c.stride.value, 1);
            opt("pad", c.pad.value, 0);
            opt("groups", c.groups.value, 1);
            opt("dilation", c.dilation.value, 1);
            if !c.bias.value {
                args.push("bias = false".into());
            }
            args.insert(0, format!("{} -> {}", c.in_ch.value, c.out_ch.value));
        }
        Layer::Linear(li) => {
            args.push(format!("{} -> {}", li.in_f.value, li.out_f.value));
            if !li.bias.value {
                args.push("bias = false".into());
            }
        }
        Layer::Pool(p) => {
            opt("k", p.k.value, 0);
            opt("stride", p.stride.value, p.k.value);
            opt("pad", p.pad.value, 0);
        }
        Layer::Dropout(p) => args.push(format!("p = {:?}", p.value)),
        Layer::Bn | Layer::Act(_) | Layer::Gap | Layer::Flatten => {}
    }
    if args.is_empty() {
        l.keyword().to_string()
    } else {
        format!("{}({})", l.keyword(), args.join(", "))
    }
}
