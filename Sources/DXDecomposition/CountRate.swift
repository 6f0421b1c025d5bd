import DXProtocol
import Foundation

/// The detector's count-rate loss (pulse pile-up), measured and undone.
///
/// A photon-counting channel misses pulses that arrive within its dead time τ of another and,
/// for a paralyzable counter, records m = n e^{−nτ} of a true rate n (Knoll, *Radiation
/// Detection and Measurement*, 4th ed., ch. 4). Two pulses that pile up are read at their
/// summed height: with the low threshold at least half the high one (ICD: the two windows
/// split one spectrum), a piled pair always reads in the high window. A low-window pulse is
/// therefore recorded alone only when no other pulse lies within τ on either side:
///
///     recorded total  m = N e^{−Nτ/T}
///     recorded low    m_low = N_low e^{−2Nτ/T}
///
/// for N true photons in a line of period T (Taguchi et al., Med Phys 37 (2010) 3957, the
/// paralyzable model with the energy of the piled pulse). Nothing here assumes τ: it is
/// measured from two air scans at different tube currents (the true rate is proportional to
/// the current; what is recorded is not), and a detector without rate loss measures τ ≈ 0
/// and is left as it is. docs/physics.md ("Pile-up, measured and undone").
public enum CountRate {
    /// One air scan: its dark-subtracted mean counts per line (both windows) and how it was made.
    public struct AirMeasurement: Sendable {
        public var total: [Double]
        public var periodUs: Double
        public var currentUA: Double

        public init(total: [Double], periodUs: Double, currentUA: Double) {
            self.total = total
            self.periodUs = periodUs
            self.currentUA = currentUA
        }

        /// From an air scan's lines and the dark reference; nil when a sample saturated or the
        /// scan has no lines (such a scan says nothing about the rate).
        public init?(lines: [ScanLine], dark: DarkReference, periodUs: UInt32, currentUA: UInt32) {
            guard currentUA > 0, periodUs > 0, let (m, saturated) = try? ChannelMeans.of(lines), saturated.isEmpty,
                  m.channels == dark.means.channels else { return nil }
            total = (0..<m.channels).map { max(m.low[$0] - dark.means.low[$0], 0) + max(m.high[$0] - dark.means.high[$0], 0) }
            self.periodUs = Double(periodUs)
            self.currentUA = Double(currentUA)
        }
    }

    /// The dead time (µs) from air scans at two or more tube currents: per channel from the
    /// highest and the lowest current, the median over channels, never below 0. Nil when the
    /// scans do not span a current ratio of at least 2 (nothing to measure it from).
    ///
    /// With r = m / T the recorded rate and ρ = s I the true one (s per µA):
    /// ln(r₁/I₁) − ln(r₂/I₂) = −τ s (I₁ − I₂), so τs = −x / (I₁ − I₂); then
    /// s = (r₁/I₁) e^{τs I₁} and τ = τs / s.
    public static func deadTimeUs(_ airs: [AirMeasurement]) -> Double? {
        guard let hi = airs.max(by: { $0.currentUA < $1.currentUA }), let lo = airs.min(by: { $0.currentUA < $1.currentUA }),
              hi.currentUA >= 2 * lo.currentUA, hi.total.count == lo.total.count, !hi.total.isEmpty else { return nil }
        var estimates: [Double] = []
        for c in hi.total.indices {
            let r1 = hi.total[c] / hi.periodUs, r2 = lo.total[c] / lo.periodUs
            guard r1 > 0, r2 > 0 else { continue }
            let x = log((r1 / hi.currentUA) / (r2 / lo.currentUA))
            let tauS = -x / (hi.currentUA - lo.currentUA)
            let s = r1 / hi.currentUA * exp(tauS * hi.currentUA)
            estimates.append(tauS / s)
        }
        guard !estimates.isEmpty else { return nil }
        estimates.sort()
        let median = estimates[estimates.count / 2]
        // A dead time its own scatter over the channels cannot tell from 0 is 0: the standard
        // error of a median, 1.2533 σ/√n (Kendall & Stuart), twice over.
        let mean = estimates.reduce(0, +) / Double(estimates.count)
        let sd = (estimates.map { ($0 - mean) * ($0 - mean) }.reduce(0, +) / Double(max(estimates.count - 1, 1))).squareRoot()
        let standardError = 1.2533 * sd / Double(estimates.count).squareRoot()
        return median > 2 * standardError ? median : 0
    }

    /// The true counts of one pixel from its recorded (dark-subtracted) counts, with `a` = τ / T.
    /// Beyond the paralyzable curve's peak (m ≥ 1/(e·a), which no pile-up corrected here
    /// reaches) the peak's true count is taken.
    @inline(__always)
    public static func trueCounts(low: Double, high: Double, a: Double) -> (low: Double, high: Double) {
        let m = low + high
        guard a > 0, m > 0 else { return (low, high) }
        let ma = m * a
        // N e^{−Na} = m by Newton from the series of the Lambert W function; four steps take
        // it to 1e-15 for Na up to 0.5 (tested).
        guard ma < 0.36 else { let n = 1 / a; return (low * exp(2 * n * a), n - low * exp(2 * n * a)) }
        var n = m * (1 + ma * (1 + 1.5 * ma))
        for _ in 0..<4 {
            let e = exp(-n * a)
            n -= (n * e - m) / (e * (1 - n * a))
        }
        let trueLow = low * exp(2 * n * a)
        return (trueLow, n - trueLow)
    }
}
