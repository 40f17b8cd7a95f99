//! The shape-consistent mutator: width classes, mutation operators, deduplication
//! by canonical text and a seeded generator of distinct mutants.
//!
//! Every mutant leaves this module re-checked: operators rewrite the syntax tree
//! so that shapes stay consistent by construction, and [`crate::check()`] proves it.
//! A mutant that fails the checker is reported as [`MutateError::Invalid`] (a bug
//! in the mutator), never skipped. The same seed gives the same mutants.

mod classes;
mod ops;
mod values;

pub use classes::{ClassInfo, Member, Port, WidthClass, WidthClasses, WidthOverflow};
pub use ops::{MAX_KERNEL, MAX_STATEMENTS, duplicate, kernel, remove, scale, set_class};
pub use values::{Grid, MAX_WIDTH, ValueSet, ValueSetError};

use crate::graph::CheckedNet;
use ops::below;
use rand_core::{Rng, SeedableRng};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::fmt;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, OnceLock};

/// The seedable generator the mutator uses: fast, and stable across `rand` releases.
pub type SeedRng = rand_pcg::Pcg64Mcg;

/// A seeded [`SeedRng`].
pub fn seed_rng(seed: u64) -> SeedRng {
    SeedRng::seed_from_u64(seed)
}

/// The content hash of a canonical text: SHA-256, as 64 lowercase hex digits.
pub fn content_hash(source: &str) -> String {
    hex(&Sha256::digest(source.as_bytes()).into())
}

fn hex(digest: &[u8; 32]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(64);
    for b in digest {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

/// A checked net with what the mutator needs: its canonical text, content hash
/// and width classes, each computed once (the classes when first asked for).
#[derive(Clone, Debug)]
pub struct Arch {
    net: CheckedNet,
    classes: OnceLock<WidthClasses>,
    source: String,
    hash: String,
}

impl Arch {
    /// Prepares a checked net for mutation.
    pub fn new(net: CheckedNet) -> Arch {
        let source = crate::print(net.net());
        let hash = content_hash(&source);
        Arch::from_parts(net, None, source, hash)
    }

    fn from_parts(
        net: CheckedNet,
        classes: Option<WidthClasses>,
        source: String,
        hash: String,
    ) -> Arch {
        Arch {
            net,
            classes: classes.map_or_else(OnceLock::new, OnceLock::from),
            source,
            hash,
        }
    }

    /// The checked net.
    pub fn net(&self) -> &CheckedNet {
        &self.net
    }

    /// Its width classes.
    pub fn classes(&self) -> &WidthClasses {
        self.classes.get_or_init(|| WidthClasses::new(&self.net))
    }

    /// Its canonical text (the identity of the architecture).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The content hash of its canonical text.
    pub fn hash(&self) -> &str {
        &self.hash
    }
}

/// What a mutation did, with its parameters. Serialised with the operator's name
/// under `op`, e.g. `{"op":"set_class","class":2,"label":"conv3","from":32,"to":200}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Mutation {
    /// One width class set to a new width.
    SetClass {
        /// The class's index.
        class: usize,
        /// The first layer producing the class.
        label: String,
        /// Its width before.
        from: u64,
        /// Its width after.
        to: u64,
    },
    /// Every class scaled by a factor and rounded to its grid.
    Scale {
        /// The factor.
        factor: f64,
        /// How many classes changed.
        changed: usize,
    },
    /// A shape-preserving statement (with the elementwise layers after it) copied.
    Duplicate {
        /// The statement copied.
        layer: String,
        /// How many statements the copy has at its top level.
        statements: usize,
    },
    /// A shape-preserving statement (with the elementwise layers after it) removed.
    Remove {
        /// The statement removed.
        layer: String,
        /// How many statements were removed at its level.
        statements: usize,
    },
    /// A conv's kernel size changed, padding adjusted to keep the spatial size.
    Kernel {
        /// The conv.
        layer: String,
        /// Kernel size before.
        from: u64,
        /// Kernel size after.
        to: u64,
        /// The new padding.
        pad: u64,
    },
}

impl Mutation {
    /// The operator's name, as serialised under `op`.
    pub fn op(&self) -> Operator {
        match self {
            Mutation::SetClass { .. } => Operator::SetClass,
            Mutation::Scale { .. } => Operator::Scale,
            Mutation::Duplicate { .. } => Operator::Duplicate,
            Mutation::Remove { .. } => Operator::Remove,
            Mutation::Kernel { .. } => Operator::Kernel,
        }
    }
}

impl fmt::Display for Mutation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Mutation::SetClass {
                class,
                label,
                from,
                to,
            } => write!(f, "set_class #{class} (`{label}`): {from} -> {to}"),
            Mutation::Scale { factor, changed } => {
                write!(f, "scale ×{factor} ({changed} classes changed)")
            }
            Mutation::Duplicate { layer, statements } => {
                write!(f, "duplicate `{layer}` ({statements} statements)")
            }
            Mutation::Remove { layer, statements } => {
                write!(f, "remove `{layer}` ({statements} statements)")
            }
            Mutation::Kernel {
                layer,
                from,
                to,
                pad,
            } => write!(f, "kernel `{layer}`: k = {from} -> {to}, pad = {pad}"),
        }
    }
}

/// The mutation operators.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Operator {
    /// [`set_class`]
    SetClass,
    /// [`scale`]
    Scale,
    /// [`duplicate`] (structural)
    Duplicate,
    /// [`remove`] (structural)
    Remove,
    /// [`kernel`] (structural)
    Kernel,
}

impl Operator {
    /// Applies the operator to `parent`; `None` when it does not apply there.
    pub fn apply<R: Rng + ?Sized>(
        self,
        parent: &Arch,
        widths: &ValueSet,
        rng: &mut R,
    ) -> Result<Option<Mutated>, MutateError> {
        match self {
            Operator::SetClass => set_class(parent, widths, rng),
            Operator::Scale => scale(parent, widths, rng),
            Operator::Duplicate => duplicate(parent, rng),
            Operator::Remove => remove(parent, rng),
            Operator::Kernel => kernel(parent, rng),
        }
    }
}

/// A re-checked mutant and the mutation that made it.
#[derive(Clone, Debug)]
pub struct Mutated {
    /// The mutant, checked.
    pub net: CheckedNet,
    /// What was done.
    pub mutation: Mutation,
    /// The mutant's width classes, when the operator knows them without a new
    /// derivation (a width change keeps the parent's classes, with new widths).
    classes: Option<WidthClasses>,
}

impl Mutated {
    /// The mutant as an [`Arch`] (printed and hashed).
    pub fn into_arch(self) -> Arch {
        let source = crate::print(self.net.net());
        let hash = content_hash(&source);
        Arch::from_parts(self.net, self.classes, source, hash)
    }
}

/// Why mutation failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum MutateError {
    /// A mutant failed the checker: a bug in the mutator, never a skipped sample.
    #[error(
        "mutant failed the checker after {mutation} (a mutator bug):\n{errors}\n--- mutant ---\n{text}"
    )]
    Invalid {
        /// The mutation applied.
        mutation: String,
        /// The checker's errors.
        errors: String,
        /// The mutant's text.
        text: String,
    },
    /// A width overflowed.
    #[error(transparent)]
    Overflow(#[from] WidthOverflow),
    /// No operator applies to the net.
    #[error(
        "`{net}` cannot be mutated: no width class can change under {widths} (input channels, `classes` and groups fix them){hint}"
    )]
    NoMutation {
        /// The net's name.
        net: String,
        /// The value set in use.
        widths: ValueSet,
        /// A suggestion.
        hint: String,
    },
    /// The generator stopped finding new architectures.
    #[error(
        "no new architecture in {attempts} attempts after {produced} distinct mutants; the space reachable from the seeds looks exhausted"
    )]
    Exhausted {
        /// Consecutive attempts that gave only duplicates.
        attempts: usize,
        /// Distinct mutants produced before.
        produced: usize,
    },
    /// The generator was given no seed network.
    #[error("no seed network to mutate")]
    NoSeeds,
}

/// Which operators to use and the widths they may write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mutator {
    /// The widths a class may take.
    pub widths: ValueSet,
    /// Whether structural operators (duplicate, remove, kernel) are used too.
    pub structural: bool,
}

impl Mutator {
    /// The operators in use, with their relative weights.
    pub fn operators(&self) -> &'static [(Operator, u64)] {
        if self.structural {
            &[
                (Operator::SetClass, 55),
                (Operator::Scale, 15),
                (Operator::Duplicate, 10),
                (Operator::Remove, 10),
                (Operator::Kernel, 10),
            ]
        } else {
            &[(Operator::SetClass, 80), (Operator::Scale, 20)]
        }
    }

    /// Applies one operator, drawn by weight among those that apply to `parent`.
    pub fn mutate<R: Rng + ?Sized>(
        &self,
        parent: &Arch,
        rng: &mut R,
    ) -> Result<Mutated, MutateError> {
        let mut left: Vec<(Operator, u64)> = self.operators().to_vec();
        while !left.is_empty() {
            let total: u64 = left.iter().map(|(_, w)| w).sum();
            let mut draw = below(rng, total);
            let mut index = 0;
            for (i, (_, w)) in left.iter().enumerate() {
                if draw < *w {
                    index = i;
                    break;
                }
                draw -= w;
            }
            let (op, _) = left.remove(index);
            if let Some(m) = op.apply(parent, &self.widths, rng)? {
                return Ok(m);
            }
        }
        Err(MutateError::NoMutation {
            net: parent.net().name().to_string(),
            widths: self.widths,
            hint: if self.structural {
                String::new()
            } else {
                "; try the structural operators".into()
            },
        })
    }
}

/// A new, distinct architecture and where it came from.
#[derive(Clone, Debug)]
pub struct Mutant {
    /// The mutant.
    pub arch: Arc<Arch>,
    /// The content hash of its parent.
    pub parent_hash: String,
    /// What made it from its parent.
    pub mutation: Mutation,
}

/// Hashes a SHA-256 digest for a hash set: its first eight bytes, already uniform.
#[derive(Default)]
struct DigestHasher(u64);

impl Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    /// Mixes in the first eight bytes of each write (the length prefix, then the digest).
    fn write(&mut self, bytes: &[u8]) {
        let mut word = [0u8; 8];
        let n = bytes.len().min(8);
        word[..n].copy_from_slice(&bytes[..n]);
        self.0 = self.0.rotate_left(8) ^ u64::from_le_bytes(word);
    }
}

/// How many recent mutants the generator keeps as parents.
pub const POOL: usize = 32;

/// How many consecutive duplicates make the generator give up.
pub const MAX_STALE: usize = 10_000;

/// A seeded stream of distinct mutants: a random walk from the seed networks. Each
/// step mutates a seed (a quarter of the time) or one of the last [`POOL`]
/// mutants, and drops any architecture already produced or among the seeds (then
/// retries from a recent mutant). The stream depends only on the seeds, the
/// mutator and the seed number.
pub struct Generator {
    mutator: Mutator,
    seeds: Vec<Arc<Arch>>,
    pool: Vec<Arc<Arch>>,
    next_slot: usize,
    seen: HashSet<[u8; 32], BuildHasherDefault<DigestHasher>>,
    produced: usize,
    attempts: usize,
    rng: SeedRng,
}

impl Generator {
    /// A generator over `seeds`.
    pub fn new(
        seeds: Vec<CheckedNet>,
        mutator: Mutator,
        seed: u64,
    ) -> Result<Generator, MutateError> {
        if seeds.is_empty() {
            return Err(MutateError::NoSeeds);
        }
        let seeds: Vec<Arc<Arch>> = seeds.into_iter().map(|n| Arc::new(Arch::new(n))).collect();
        let seen = seeds
            .iter()
            .map(|a| Sha256::digest(a.source().as_bytes()).into())
            .collect();
        Ok(Generator {
            mutator,
            seeds,
            pool: Vec::new(),
            next_slot: 0,
            seen,
            produced: 0,
            attempts: 0,
            rng: seed_rng(seed),
        })
    }

    /// The seed architectures.
    pub fn seeds(&self) -> &[Arc<Arch>] {
        &self.seeds
    }

    /// How many distinct mutants have been produced.
    pub fn produced(&self) -> usize {
        self.produced
    }

    /// How many mutants were made, duplicates included.
    pub fn attempts(&self) -> usize {
        self.attempts
    }

    /// A seed (a quarter of the time, or while the pool is empty) or a recent
    /// mutant; every other retry after a duplicate takes a recent mutant, since a
    /// seed's neighbourhood is the first to run dry.
    fn parent(&mut self, after_duplicate: bool) -> Arc<Arch> {
        let from_pool = !self.pool.is_empty() && (after_duplicate || below(&mut self.rng, 4) != 0);
        let list = if from_pool { &self.pool } else { &self.seeds };
        let i = below(&mut self.rng, list.len() as u64) as usize;
        Arc::clone(&list[i.min(list.len() - 1)])
    }

    /// The next distinct mutant.
    ///
    /// A parent no operator applies to is passed over; if nothing could be
    /// mutated at all, that is the error returned.
    pub fn next_mutant(&mut self) -> Result<Mutant, MutateError> {
        let mut immutable = None;
        for attempt in 0..MAX_STALE {
            let parent = self.parent(attempt % 2 == 1);
            let m = match self.mutator.mutate(&parent, &mut self.rng) {
                Ok(m) => m,
                Err(e @ MutateError::NoMutation { .. }) => {
                    immutable = Some(e);
                    continue;
                }
                Err(e) => return Err(e),
            };
            self.attempts += 1;
            let source = crate::print(m.net.net());
            let digest: [u8; 32] = Sha256::digest(source.as_bytes()).into();
            if !self.seen.insert(digest) {
                continue;
            }
            let arch = Arc::new(Arch::from_parts(m.net, m.classes, source, hex(&digest)));
            if self.pool.len() < POOL {
                self.pool.push(Arc::clone(&arch));
            } else {
                self.pool[self.next_slot] = Arc::clone(&arch);
                self.next_slot = (self.next_slot + 1) % POOL;
            }
            self.produced += 1;
            return Ok(Mutant {
                arch,
                parent_hash: parent.hash().to_string(),
                mutation: m.mutation,
            });
        }
        match immutable {
            Some(e) if self.attempts == 0 => Err(e),
            _ => Err(MutateError::Exhausted {
                attempts: MAX_STALE,
                produced: self.produced,
            }),
        }
    }
}

impl Iterator for Generator {
    type Item = Result<Mutant, MutateError>;

    /// Never `None`: the stream ends with an error when it runs dry.
    fn next(&mut self) -> Option<Self::Item> {
        Some(self.next_mutant())
    }
}
