// DCMTK (Debian libdcmtk-dev) as a system library: this target only carries pkg-config's flags
// (`dcmtk`) to CDCMTK, the C++ shim beside it. DCMTK's headers are C++; Swift imports none of
// them, only the shim's C interface (Sources/CDCMTK/include/cdcmtk.h).
#include <dcmtk/config/osconfig.h>
