import DXProtocol
import Foundation

/// What lies on the table: the areal densities the beam crosses at a point. The scene knows
/// its truth; the physics (a `PhysicsModel`) turns it into counts per window.
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

/// The photon-counting detector: per-channel dark offset and gain, mean counts from its
/// `PhysicsModel`, Poisson noise (normal approximation above a few counts), 16-bit
/// saturation (ICD §6).
public struct Detector: Sendable {
    public let channels: Int
    public let pitchUm: Int
    public let physicsModel: PhysicsModel
    public var darkOffset: [Double]
    public var gain: [Double]
    private var rng: SplitMix64
    private var physics: any LinePhysics
    // Scratch buffers of one line, kept to spare the allocations.
    private var compositions: [Composition]
    private var meanLow: [Double]
    private var meanHigh: [Double]

    public init(channels: Int, pitchUm: Int, seed: UInt64, physics: PhysicsModel = .kramers) {
        self.init(channels: channels, pitchUm: pitchUm, seed: seed, model: physics,
                  physics: physics.makePhysics(channels: channels, pitchUm: pitchUm, seed: seed))
    }

    /// A detector with physics of the caller's making (a model with some effects switched off,
    /// to see what each does); `model` names the family it belongs to.
    public init(channels: Int, pitchUm: Int, seed: UInt64, model: PhysicsModel, physics: any LinePhysics) {
        self.physicsSeed = seed
        self.basePhysics = physics
        self.channels = channels
        self.pitchUm = pitchUm
        self.physicsModel = model
        var r = SplitMix64(seed: seed ^ 0xD1CE)
        darkOffset = (0..<channels).map { _ in 180 + 40 * Double(r.next() % 1000) / 1000 }
        gain = (0..<channels).map { _ in 0.92 + 0.16 * Double(r.next() % 1000) / 1000 }
        rng = SplitMix64(seed: seed)
        self.physics = physics
        compositions = Array(repeating: .air, count: channels)
        meanLow = Array(repeating: 0, count: channels)
        meanHigh = Array(repeating: 0, count: channels)
    }

    public var meanDark: Double { darkOffset.reduce(0, +) / Double(max(channels, 1)) }

    /// How far the spectrum is from the one the physics was made with (docs/qc.md).
    public private(set) var spectralShift = SpectralShift()
    private let physicsSeed: UInt64
    /// The physics as made, before any shift.
    private let basePhysics: any LinePhysics

    /// Moves the tube voltage and the window thresholds to `shift` from the physics' own (the
    /// physics is made again from the one the detector was built with). The channels' offsets,
    /// gains and the noise stream stay.
    public mutating func shiftSpectrum(to shift: SpectralShift) {
        guard !shift.isClose(to: spectralShift) else { return }
        spectralShift = shift
        physics = shift.isClose(to: SpectralShift()) ? basePhysics
            : basePhysics.shifted(by: shift, channels: channels, pitchUm: pitchUm, seed: physicsSeed)
    }

    /// Restarts the photon noise from `seed`, keeping the channels' offsets and gains (the same
    /// detector, another exposure): a scan's noise then does not depend on what was scanned before.
    public mutating func reseedNoise(_ seed: UInt64) { rng = SplitMix64(seed: seed) }

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
        if mode == .dark {
            for c in 0..<channels { meanLow[c] = 0; meanHigh[c] = 0 }
        } else {
            for c in 0..<channels { compositions[c] = scene.composition(xUm: channelX(c, carriageX: xUm), yUm: yUm) }
            physics.meanCounts(of: compositions, exposure: LineExposure(periodUs: periodUs, currentUA: currentUA, outputFactor: outputFactor),
                               gain: gain, low: &meanLow, high: &meanHigh)
        }
        for c in 0..<channels {
            let low = mode == .dual ? meanLow[c] : 0
            let high = meanHigh[c]
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
