//! Reference networks written in the DSL with `network!`: the seeds a search
//! starts from and the nets the end-to-end tests exercise.
//!
//! Each net is a Burn module (`init(device)`, `forward(images) -> logits`) and
//! carries its canonical source as `SOURCE`; `models/nas/<snake_name>.nas` holds
//! the same text, kept equal by the crate's tests.

use burn::backend::Flex;

nas_macros::network! {
    /// A small residual CNN for 32x32 RGB images.
    pub net TinyResNet(input = [3, 32, 32], classes = 100) {
        stem: conv(3 -> 32, k = 3, pad = 1);
        bn;
        relu;
        residual {
            conv(32 -> 32, k = 3, pad = 1); bn; relu;
            conv(32 -> 32, k = 3, pad = 1); bn;
        }
        relu;
        down: residual {
            conv(32 -> 64, k = 3, stride = 2, pad = 1); bn; relu;
            conv(64 -> 64, k = 3, pad = 1); bn;
        } shortcut {
            conv(32 -> 64, k = 1, stride = 2); bn;
        }
        relu;
        concat {
            branch { conv(64 -> 32, k = 1); }
            branch { conv(64 -> 48, k = 3, pad = 1); }
        }
        relu;
        gap;
        dropout(p = 0.2);
        head: linear(80 -> 100);
    }
}

nas_macros::network! {
    /// AlexNet adapted to 32x32 CIFAR-100 images, the search's seed: five 3x3
    /// convolutions of widths 64-192-384-256-256, three 2x2 max-pools
    /// (32 -> 16 -> 8 -> 4), then a 4096-4096-100 classifier over the flattened
    /// 256x4x4 map, with dropout before each hidden fully connected layer.
    pub net AlexNetCifar(input = [3, 32, 32], classes = 100) {
        conv1: conv(3 -> 64, k = 3, pad = 1);
        relu;
        pool1: maxpool(k = 2);
        conv2: conv(64 -> 192, k = 3, pad = 1);
        relu;
        pool2: maxpool(k = 2);
        conv3: conv(192 -> 384, k = 3, pad = 1);
        relu;
        conv4: conv(384 -> 256, k = 3, pad = 1);
        relu;
        conv5: conv(256 -> 256, k = 3, pad = 1);
        relu;
        pool5: maxpool(k = 2);
        flatten;
        drop6: dropout(p = 0.5);
        fc6: linear(4096 -> 4096);
        relu;
        drop7: dropout(p = 0.5);
        fc7: linear(4096 -> 4096);
        relu;
        head: linear(4096 -> 100);
    }
}

nas_macros::network! {
    /// A VGG-style CNN for CIFAR-10: three stages of two 3x3 conv + BatchNorm +
    /// ReLU (widths 32, 64, 128; bias-free convs since BatchNorm follows), each
    /// ending in a 2x2 max-pool, then global average pooling and a linear head.
    pub net VggCifar(input = [3, 32, 32], classes = 10) {
        conv1_1: conv(3 -> 32, k = 3, pad = 1, bias = false);
        bn;
        relu;
        conv1_2: conv(32 -> 32, k = 3, pad = 1, bias = false);
        bn;
        relu;
        maxpool(k = 2);
        conv2_1: conv(32 -> 64, k = 3, pad = 1, bias = false);
        bn;
        relu;
        conv2_2: conv(64 -> 64, k = 3, pad = 1, bias = false);
        bn;
        relu;
        maxpool(k = 2);
        conv3_1: conv(64 -> 128, k = 3, pad = 1, bias = false);
        bn;
        relu;
        conv3_2: conv(128 -> 128, k = 3, pad = 1, bias = false);
        bn;
        relu;
        maxpool(k = 2);
        gap;
        dropout(p = 0.3);
        head: linear(128 -> 10);
    }
}

nas_macros::network! {
    /// A MobileNet-style CNN for CIFAR-10: a 3x3 stem, then depthwise-separable
    /// blocks (a depthwise 3x3 conv with `groups` equal to its channels, then a
    /// pointwise 1x1 conv, each followed by BatchNorm and ReLU), downsampling
    /// twice with stride-2 depthwise convs (32 -> 16 -> 8), global average
    /// pooling and a linear head.
    pub net MobileNetCifar(input = [3, 32, 32], classes = 10) {
        stem: conv(3 -> 32, k = 3, pad = 1, bias = false);
        bn;
        relu;
        dw1: conv(32 -> 32, k = 3, pad = 1, groups = 32, bias = false);
        bn;
        relu;
        pw1: conv(32 -> 64, k = 1, bias = false);
        bn;
        relu;
        dw2: conv(64 -> 64, k = 3, stride = 2, pad = 1, groups = 64, bias = false);
        bn;
        relu;
        pw2: conv(64 -> 128, k = 1, bias = false);
        bn;
        relu;
        dw3: conv(128 -> 128, k = 3, pad = 1, groups = 128, bias = false);
        bn;
        relu;
        pw3: conv(128 -> 128, k = 1, bias = false);
        bn;
        relu;
        dw4: conv(128 -> 128, k = 3, stride = 2, pad = 1, groups = 128, bias = false);
        bn;
        relu;
        pw4: conv(128 -> 256, k = 1, bias = false);
        bn;
        relu;
        dw5: conv(256 -> 256, k = 3, pad = 1, groups = 256, bias = false);
        bn;
        relu;
        pw5: conv(256 -> 256, k = 1, bias = false);
        bn;
        relu;
        gap;
        head: linear(256 -> 10);
    }
}

nas_macros::network! {
    /// A plain small CNN for fast CPU search (the default seed of `evolve`):
    /// three 3x3 conv + BatchNorm + ReLU stages of widths 16, 32, 64; the first
    /// convolution has stride 2 and a 2x2 max-pool follows each of the first two
    /// stages (32 -> 16 -> 8 -> 4), then global average pooling and a linear
    /// head (24,458 parameters, 0.70 M multiply-accumulates per image).
    pub net SmallCnn(input = [3, 32, 32], classes = 10) {
        conv1: conv(3 -> 16, k = 3, stride = 2, pad = 1);
        bn;
        relu;
        maxpool(k = 2);
        conv2: conv(16 -> 32, k = 3, pad = 1);
        bn;
        relu;
        maxpool(k = 2);
        conv3: conv(32 -> 64, k = 3, pad = 1);
        bn;
        relu;
        gap;
        head: linear(64 -> 10);
    }
}

/// Every net of this crate as `(name, canonical source)`, in declaration order.
/// The source is the macro's `SOURCE`, the same text as `models/nas/<snake_name>.nas`.
pub fn all_sources() -> Vec<(&'static str, &'static str)> {
    vec![
        ("TinyResNet", TinyResNet::<Flex>::SOURCE),
        ("AlexNetCifar", AlexNetCifar::<Flex>::SOURCE),
        ("VggCifar", VggCifar::<Flex>::SOURCE),
        ("MobileNetCifar", MobileNetCifar::<Flex>::SOURCE),
        ("SmallCnn", SmallCnn::<Flex>::SOURCE),
    ]
}

/// The `.nas` file stem of a net: its name in snake case (`TinyResNet` ->
/// `tiny_res_net`).
pub fn snake_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 4);
    for (i, ch) in name.chars().enumerate() {
        if ch.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(ch.to_ascii_lowercase());
        } else {
            out.push(ch);
        }
    }
    out
}
