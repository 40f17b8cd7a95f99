net Bad(input = [3, 8], size = 3) {
    gap;
}
