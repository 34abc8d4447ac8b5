// labels: unit
/* Half-precision conversions: exhaustive round trip of every fp16/bf16 bit pattern. The
 * float32 -> half direction against torch is covered by the format fixtures. */
#include <math.h>
#include <stdint.h>

#include "base/dtype.h"
#include "test_util.h"

int main(void) {
    int bad16 = 0, badbf = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = f16_to_f32((uint16_t)h);
        if (!isnan(f) && f32_to_f16(f) != h)
            bad16++;
        float g = bf16_to_f32((uint16_t)h);
        if (!isnan(g) && f32_to_bf16(g) != h)
            badbf++;
    }
    CHECKF(bad16 == 0, "%d fp16 patterns do not round-trip", bad16);
    CHECKF(badbf == 0, "%d bf16 patterns do not round-trip", badbf);
    DType d;
    CHECK(dtype_from_safetensors_name("BF16", &d) == 0 && d == DTYPE_BF16);
    CHECK(dtype_from_safetensors_name("F8_E4M3", &d) != 0);
    return test_finish();
}
