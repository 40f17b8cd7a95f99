//! Runtime side of the project: the command line (check, fmt, summary), and in
//! time the runtime builder, training, data, proposers and the search loop.

pub mod cli;
pub mod corpus;
pub mod corpus_train;
pub mod data;
pub mod evolve;
pub mod experiment;
pub mod fidelity;
pub mod finetune;
pub mod pairs;
pub mod propose;
pub mod report;
pub mod runtime;
pub mod stats;
pub mod store;
pub mod train;
