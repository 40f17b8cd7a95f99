// Every layer kind and argument, written in a loose, non-canonical way.
pub net AllLayers(input = [3, 16, 16], classes = 7) {
    a: conv(3->8, k=3, pad=1, stride=1, bias=true);  // defaults written out
    bn; relu;
    conv(8 -> 16, k = 3, stride = 2, pad = 2, dilation = 2, bias = false);
    gelu;
    conv(16 -> 16, k = 3, pad = 1, groups = 16);
    silu;
    maxpool(k = 3, stride = 1, pad = 1);
    avgpool(k = 2);
    sigmoid;
    tanh;
    residual { conv(16 -> 16, k = 1); bn; }
    concat {
        branch { }
        branch { conv(16 -> 8, k = 1); }
    }
    flatten;
    dropout(p = 0);
    linear(384 -> 7);
}
