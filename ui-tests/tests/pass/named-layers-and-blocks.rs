use burn::tensor::Tensor;
use nas_macros::network;

network! {
    pub net Net(input = [3, 8, 8], classes = 10) {
        stem: conv(3 -> 8, k = 3, pad = 1);
        stem_bn: bn;
        block: residual {
            inner: conv(8 -> 8, k = 3, pad = 1);
        }
        mix: concat {
            branch { left: conv(8 -> 4, k = 1); }
            branch { right: avgpool(k = 3, stride = 1, pad = 1); }
        }
        pool: maxpool(k = 2);
        gap;
        drop: dropout(p = 0.1);
        head: linear(12 -> 10);
    }
}

fn main() {
    type B = burn::backend::Flex;
    let device = Default::default();
    let m = Net::<B>::init(&device);
    // Every stateful layer is a field named as in the source.
    let _ = (
        &m.stem, &m.stem_bn, &m.inner, &m.left, &m.right, &m.pool, &m.drop, &m.head,
    );
    let x = Tensor::<B, 4>::zeros([2, 3, 8, 8], &device);
    assert_eq!(m.forward(x).dims(), [2, 10]);
    // The canonical text keeps the names and checks again to the same net.
    let nets = nas_dsl::check_str(Net::<B>::SOURCE).unwrap();
    assert_eq!(nets.len(), 1);
    assert_eq!(nets[0].params(), Net::<B>::PARAMS);
    assert!(Net::<B>::SOURCE.contains("block: residual"));
    assert!(Net::<B>::SOURCE.contains("head: linear(12 -> 10)"));
}
