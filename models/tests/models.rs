//! Exercises every net of the `models` crate: builds it on the CPU backend, runs a
//! forward pass, compares its parameter counts with the checker's, and keeps
//! `models/nas/*.nas` equal to the macro's canonical `SOURCE` (regenerate them
//! with `NAS_BLESS=1 cargo test -p models`).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code: a failure should panic

use burn::backend::Flex;
use burn::backend::flex::FlexDevice;
use burn::module::Module;
use burn::tensor::{Distribution, Tensor};
use models::{AlexNetCifar, MobileNetCifar, SmallCnn, TinyResNet, VggCifar, all_sources};
use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::OnceLock;

type B = Flex;

/// The one net a model's `SOURCE` holds, checked; the rendered diagnostics if not.
fn checked(source: &str) -> Result<nas_dsl::CheckedNet, String> {
    let mut nets =
        nas_dsl::check_str(source).map_err(|e| nas_dsl::diag::render("SOURCE", source, &e))?;
    if nets.len() != 1 {
        return Err(format!("SOURCE holds {} nets, expected one", nets.len()));
    }
    Ok(nets.remove(0))
}

/// Builds a model, runs a batch of two random images through it and compares
/// its shapes and parameter counts with what the checker derives from `SOURCE`.
macro_rules! exercise {
    ($model:ident) => {{
        let device = FlexDevice;
        let net = checked($model::<B>::SOURCE).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(net.name(), stringify!($model));
        assert_eq!(
            net.input().dims(),
            $model::<B>::INPUT
                .iter()
                .map(|&d| d as u64)
                .collect::<Vec<_>>()
        );
        assert_eq!(net.output().dims(), vec![$model::<B>::CLASSES as u64]);
        assert_eq!($model::<B>::PARAMS, net.params(), "PARAMS vs params()");
        assert_eq!($model::<B>::FLOPS, net.flops(), "FLOPS vs flops()");

        let model = $model::<B>::init(&device);
        assert_eq!(
            model.num_params() as u64,
            net.burn_params(),
            "Burn's num_params() vs the checker's burn_params()"
        );

        let [c, h, w] = <[usize; 3]>::try_from($model::<B>::INPUT).unwrap();
        let images = Tensor::<B, 4>::random([2, c, h, w], Distribution::Normal(0.0, 1.0), &device);
        let logits = model.forward(images);
        assert_eq!(logits.dims(), [2, $model::<B>::CLASSES]);
        let values = logits.into_data().to_vec::<f32>().unwrap();
        assert_eq!(values.len(), 2 * $model::<B>::CLASSES);
        assert!(
            values.iter().all(|v| v.is_finite()),
            "non-finite logits: {values:?}"
        );
        net
    }};
}

#[test]
fn tiny_res_net() {
    let net = exercise!(TinyResNet);
    // The DSL reference's example, verbatim.
    assert_eq!(
        net.layer("down").map(|l| l.output_shape().dims()),
        Some(vec![64, 16, 16])
    );
}

#[test]
fn alex_net_cifar() {
    let net = exercise!(AlexNetCifar);
    // Three 2x2 pools take 32x32 to 4x4, so the classifier sees 256·4·4 = 4096 features.
    assert_eq!(
        net.layer("pool5").map(|l| l.output_shape().dims()),
        Some(vec![256, 4, 4])
    );
}

#[test]
fn vgg_cifar() {
    exercise!(VggCifar);
}

#[test]
fn mobile_net_cifar() {
    exercise!(MobileNetCifar);
}

#[test]
fn small_cnn() {
    let net = exercise!(SmallCnn);
    // PyTorch count, by hand:
    //   conv1  3·16·9 + 16  =    448    bn 2·16 =  32
    //   conv2 16·32·9 + 32  =  4,640    bn 2·32 =  64
    //   conv3 32·64·9 + 64  = 18,496    bn 2·64 = 128
    //   head  64·10 + 10    =    650
    //   total                 24,458
    assert_eq!(net.params(), 24_458);
    assert_eq!(SmallCnn::<B>::PARAMS, 24_458);
    // Burn also stores each BatchNorm's running mean and variance: 2·(16 + 32 + 64) more.
    assert_eq!(net.burn_params(), 24_458 + 224);
}

fn nas_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("nas")
}

/// The `.nas` file of a net: `models/nas/<snake_name>.nas`.
fn nas_path(name: &str) -> PathBuf {
    nas_dir().join(format!("{}.nas", models::snake_name(name)))
}

/// With `NAS_BLESS=1`, (re)writes every `.nas` file from its `SOURCE`, once per
/// test run and before any test reads the directory.
fn bless() -> Result<(), String> {
    static BLESSED: OnceLock<Result<(), String>> = OnceLock::new();
    BLESSED
        .get_or_init(|| {
            if std::env::var("NAS_BLESS").is_ok_and(|v| v == "1") {
                std::fs::create_dir_all(nas_dir()).map_err(|e| e.to_string())?;
                for (name, source) in all_sources() {
                    let path = nas_path(name);
                    std::fs::write(&path, source)
                        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                }
            }
            Ok(())
        })
        .clone()
}

/// `models/nas/<snake_name>.nas` holds exactly each net's `SOURCE`.
#[test]
fn nas_files_match_sources() {
    bless().unwrap();
    for (name, source) in all_sources() {
        let path = nas_path(name);
        let on_disk = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "cannot read {}: {e}; regenerate with `NAS_BLESS=1 cargo test -p models`",
                path.display()
            )
        });
        assert!(
            on_disk == source,
            "{} differs from `{name}::SOURCE`; regenerate with \
             `NAS_BLESS=1 cargo test -p models`\n--- file ---\n{on_disk}\n--- SOURCE ---\n{source}",
            path.display()
        );
    }
}

/// Every `.nas` file in `models/nas` passes the checker, is already in canonical
/// form, and belongs to a net of this crate (no stale files).
#[test]
fn nas_files_check() {
    let expected: BTreeSet<String> = all_sources()
        .iter()
        .map(|(name, _)| format!("{}.nas", models::snake_name(name)))
        .collect();
    bless().unwrap();
    let mut found = BTreeSet::new();
    for entry in std::fs::read_dir(nas_dir()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "nas") {
            continue;
        }
        let file_name = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let nets = nas_dsl::check_str(&text)
            .unwrap_or_else(|e| panic!("{}", nas_dsl::diag::render(&file_name, &text, &e)));
        assert_eq!(nets.len(), 1, "{file_name} should hold exactly one net");
        assert_eq!(
            nas_dsl::print(nets[0].net()),
            text,
            "{file_name} is not canonical"
        );
        let (_, source) = all_sources()
            .into_iter()
            .find(|(name, _)| format!("{}.nas", models::snake_name(name)) == file_name)
            .unwrap_or_else(|| panic!("{file_name} matches no net in models::all_sources()"));
        assert_eq!(text, source, "{file_name} differs from its SOURCE");
        found.insert(file_name);
    }
    assert_eq!(found, expected, "models/nas should hold one file per net");
}

#[test]
fn snake_names() {
    let names: Vec<String> = all_sources()
        .iter()
        .map(|(name, _)| models::snake_name(name))
        .collect();
    assert_eq!(
        names,
        [
            "tiny_res_net",
            "alex_net_cifar",
            "vgg_cifar",
            "mobile_net_cifar",
            "small_cnn"
        ]
    );
}

/// Prints each net's summary table (visible with `--nocapture`), and checks the
/// summary's totals agree with the net's.
#[test]
fn summaries() {
    for (name, source) in all_sources() {
        let net = checked(source).unwrap_or_else(|e| panic!("{name}: {e}"));
        let summary = nas_dsl::summary::summarize(&net);
        assert_eq!(summary.net, name);
        assert_eq!(summary.params, net.params());
        assert_eq!(summary.flops, net.flops());
        println!("{}", summary.table());
    }
}
