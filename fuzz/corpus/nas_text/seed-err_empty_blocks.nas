net Bad(input = [3, 8, 8], classes = 3) {
    residual { }
    concat { }
    gap;
}
