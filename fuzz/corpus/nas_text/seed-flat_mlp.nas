/// A multi-layer perceptron on flat input.
net FlatMlp(input = [784], classes = 10) {
    linear(784 -> 256);
    bn;
    gelu;
    dropout(p = 0.1);
    linear(256 -> 128, bias = false);
    silu;
    head: linear(128 -> 10);
}
