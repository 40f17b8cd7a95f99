// A valid net written the long way: defaults spelled out, arguments out of order,
// odd spacing, several statements on a line.
net   Messy( input=[3,8,8],classes=10 ){
    conv(3->8, pad = 1, k = 3, stride = 1, groups = 1); bn; relu;
    pool: maxpool(k = 2, stride = 2);
    gap;   dropout(p = 0.5);
    head: linear(8 -> 10, bias = true);
}
