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
