// A small tensor program: builds tensors, multiplies, prints.
#include <fathom.h>

#include <iostream>

using namespace fathom;

int main() {
  manual_seed(0);
  Tensor a = arange(0, 6, 1, kFloat32);
  Tensor m = ops::view(a, {2, 3});
  Tensor w = randn({3, 2});
  std::cout << "a = " << m << "\nw = " << w << "\na @ w = " << ops::matmul(m, w)
            << "\na^T = " << ops::transpose(m, 0, 1) << "\n";
  return 0;
}
