import DXProtocol
import Foundation

/// What lies on the table: the areal densities the beam crosses at a point. The scene knows
/// its truth; the physics (`DualEnergyBeam`) turns it into transmission per window.
public protocol Scene: Sendable {
    func composition(xUm: Int32, yUm: Int32) -> Composition
    /// What the beam sees with the arm at this angle (tenths of a degree): the same scene for
    /// flat phantoms, the side view of a patient at 90°.
    func projection(armAngleX10: Int16) -> any Scene
}

extension Scene {
    public func projection(armAngleX10: Int16) -> any Scene { self }
}

/// Nothing on the table: air everywhere.
public struct EmptyTable: Scene {
    public init() {}
    public func composition(xUm: Int32, yUm: Int32) -> Composition { .air }
}

/// A deterministic, fast random source (SplitMix64) so that a seeded simulator repeats
/// itself exactly.
public struct SplitMix64: RandomNumberGenerator, Sendable {
    private var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE5_E9B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }

    /// A standard normal deviate (Box–Muller).
    public mutating func gaussian() -> Double {
        let u1 = max(Double(next() >> 11) * 0x1p-53, 1e-300)
        let u2 = Double(next() >> 11) * 0x1p-53
        return (-2 * _log(u1)).squareRoot() * _cos(2 * .pi * u2)
    }
}

@inline(__always) func _log(_ x: Double) -> Double { log(x) }
@inline(__always) func _cos(_ x: Double) -> Double { cos(x) }

/// The photon-counting detector: per-channel dark offset and gain, counts proportional to
/// tube current and transmission, Poisson noise (normal approximation above a few counts),
/// 16-bit saturation (ICD §6).
public struct Detector: Sendable {
    public let channels: Int
    public let pitchUm: Int
    public var darkOffset: [Double]
    public var gain: [Double]
    /// Unattenuated counts per line period of 1 ms at 1000 µA, per window: a 10 ms line at
    /// 1 mA reads about 35,000 and 30,000 in air, below the 16-bit ceiling.
    public var airCountsLow: Double = 3_500
    public var airCountsHigh: Double = 3_000
    private var rng: SplitMix64
    private var transmissions = TransmissionCache(beam: DualEnergyBeam())

    public init(channels: Int, pitchUm: Int, seed: UInt64) {
        self.channels = channels
        self.pitchUm = pitchUm
        var r = SplitMix64(seed: seed ^ 0xD1CE)
        darkOffset = (0..<channels).map { _ in 180 + 40 * Double(r.next() % 1000) / 1000 }
        gain = (0..<channels).map { _ in 0.92 + 0.16 * Double(r.next() % 1000) / 1000 }
        rng = SplitMix64(seed: seed)
    }

    public var meanDark: Double { darkOffset.reduce(0, +) / Double(max(channels, 1)) }

    /// Lateral position of channel c for a carriage at x (ICD §6 geometry).
    public func channelX(_ c: Int, carriageX: Int32) -> Int32 {
        let offset = (Double(c) - Double(channels - 1) / 2) * Double(pitchUm)
        return Int32(clamping: Int64(carriageX) + Int64(offset.rounded()))
    }

    /// One line of samples, interleaved low/high.
    public mutating func readLine(mode: ScanMode, xUm: Int32, yUm: Int32, periodUs: UInt32,
                                  currentUA: UInt32, outputFactor: Double, scene: any Scene) -> (samples: [UInt16], saturated: Bool) {
        var out = [UInt16](repeating: 0, count: 2 * channels)
        var saturated = false
        let exposure = Double(periodUs) / 1000 * Double(currentUA) / 1000 * outputFactor
        for c in 0..<channels {
            var low = 0.0, high = 0.0
            if mode != .dark {
                let t = transmissions.transmission(scene.composition(xUm: channelX(c, carriageX: xUm), yUm: yUm))
                low = mode == .dual ? airCountsLow * exposure * t.low * gain[c] : 0
                high = airCountsHigh * exposure * t.high * gain[c]
            }
            // Photon counts are Poisson; the channel's offset is a pedestal with about one
            // count of electronic noise.
            let l = mode == .single ? 0 : max(0, (noisy(low) + darkOffset[c] + rng.gaussian()).rounded())
            let h = max(0, (noisy(high) + darkOffset[c] + rng.gaussian()).rounded())
            if l >= 65535 || h >= 65535 { saturated = true }
            out[2 * c] = UInt16(min(l, 65535))
            out[2 * c + 1] = UInt16(min(h, 65535))
        }
        return (out, saturated)
    }

    /// Poisson counts: exact (Knuth) for small means, normal approximation above 30.
    private mutating func noisy(_ mean: Double) -> Double {
        guard mean > 0 else { return 0 }
        if mean < 30 {
            let limit = Foundation.exp(-mean)
            var k = 0.0, p = 1.0
            repeat {
                k += 1
                p *= Double(rng.next() >> 11) * 0x1p-53
            } while p > limit
            return k - 1
        }
        let v = mean + mean.squareRoot() * rng.gaussian()
        return max(0, v.rounded())
    }
}
