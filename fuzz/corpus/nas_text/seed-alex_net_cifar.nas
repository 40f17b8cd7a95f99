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
