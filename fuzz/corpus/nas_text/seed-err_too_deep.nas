net Deep(input = [3, 8, 8], classes = 3) {
    residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual {     residual { relu; } } } } } } } } } } } } } } } } } } } } } } } } } } } } } } } } } } } } } } } }
    gap;
}
