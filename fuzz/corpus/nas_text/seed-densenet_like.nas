/// Dense connectivity: each concat keeps its input as an identity branch.
net DenseLike(input = [3, 32, 32], classes = 10) {
    stem: conv(3 -> 16, k = 3, pad = 1);
    dense1: concat {
        branch { }
        branch { bn; relu; conv(16 -> 12, k = 3, pad = 1); }
    }
    dense2: concat {
        branch { }
        branch { bn; relu; conv(28 -> 12, k = 3, pad = 1); }
    }
    transition: conv(40 -> 20, k = 1);
    avgpool(k = 2);
    residual {
        conv(20 -> 20, k = 3, pad = 1);
        bn;
        relu;
    }
    gap;
    linear(20 -> 10);
}
