import Foundation

/// Which physics turns a line of compositions into mean counts. The host must calibrate
/// against a phantom on whichever it meets; two independently written models let tests
/// check that it does not depend on one (docs/physics.md).
public enum PhysicsModel: String, Sendable, CaseIterable, Codable {
    /// The first model: Kramers spectrum, cerium filter, ideal counting in sharp windows.
    case kramers
    /// The second model: thick-target spectrum with heel effect, samarium filter, a CdTe
    /// counting detector (resolution, K-escape, charge sharing, pile-up) and scatter.
    case cdte

    /// One line for help text.
    public var summary: String {
        switch self {
        case .kramers: "Kramers spectrum, 0.12 g/cm² Ce filter, ideal photon counting in sharp windows (the first model)"
        case .cdte: "Birch–Marshall thick-target spectrum with heel effect, Sm filter, CdTe detector with blur, K-escape, charge sharing, pile-up, and scatter"
        }
    }

    /// This model's physics for a detector of `channels` channels at `pitchUm`; `seed`
    /// fixes whatever the model draws per channel (the noise is the detector's).
    func makePhysics(channels: Int, pitchUm: Int, seed: UInt64) -> any LinePhysics {
        switch self {
        case .kramers: KramersLinePhysics()
        case .cdte: CdTeLinePhysics(channels: channels, pitchUm: pitchUm, seed: seed)
        }
    }
}

/// A change of the unit's spectrum after its calibration, the kind the daily phantom QC is
/// there to find (docs/qc.md): the tube voltage off its setting, or a window threshold moved
/// (a comparator's reference drifting with temperature or age, a detector module replaced).
/// Unlike the tube's output, which the air scan before every measurement cancels, these
/// change the attenuation of bone against soft tissue in each window, and so the BMD.
public struct SpectralShift: Sendable, Equatable, Codable {
    public var kVp = 0.0
    /// The low window's lower edge.
    public var lowThresholdKeV = 0.0
    /// The edge between the low and the high window.
    public var highThresholdKeV = 0.0

    public init(kVp: Double = 0, lowThresholdKeV: Double = 0, highThresholdKeV: Double = 0) {
        self.kVp = kVp; self.lowThresholdKeV = lowThresholdKeV; self.highThresholdKeV = highThresholdKeV
    }

    public static func + (a: SpectralShift, b: SpectralShift) -> SpectralShift {
        SpectralShift(kVp: a.kVp + b.kVp, lowThresholdKeV: a.lowThresholdKeV + b.lowThresholdKeV, highThresholdKeV: a.highThresholdKeV + b.highThresholdKeV)
    }

    public static func * (a: SpectralShift, f: Double) -> SpectralShift {
        SpectralShift(kVp: a.kVp * f, lowThresholdKeV: a.lowThresholdKeV * f, highThresholdKeV: a.highThresholdKeV * f)
    }

    /// Within 1 eV (or 1 mV of tube voltage) of `other`: not worth rebuilding the physics for.
    public func isClose(to other: SpectralShift) -> Bool {
        abs(kVp - other.kVp) < 1e-3 && abs(lowThresholdKeV - other.lowThresholdKeV) < 1e-3 && abs(highThresholdKeV - other.highThresholdKeV) < 1e-3
    }
}

/// What a line's exposure is: its period, tube current and the tube's output relative to
/// power-on.
public struct LineExposure: Sendable, Equatable {
    public var periodUs: UInt32
    public var currentUA: UInt32
    public var outputFactor: Double

    public init(periodUs: UInt32, currentUA: UInt32, outputFactor: Double) {
        self.periodUs = periodUs; self.currentUA = currentUA; self.outputFactor = outputFactor
    }

    /// Period × current × output in ms·mA, the unit the models' air counts are given in.
    var msMA: Double { Double(periodUs) / 1000 * Double(currentUA) / 1000 * outputFactor }
}

/// The physics of one line: mean photon counts per channel and window, before noise and
/// dark offset, for a whole line of compositions at once (so that scatter, charge sharing
/// and pile-up can see a channel's neighbours). A model may cache what it worked out for
/// compositions it has seen; it is a value, copied with its detector.
public protocol LinePhysics: Sendable {
    /// Fills `low` and `high` (already `compositions.count` long) with mean counts of
    /// channel c's low and high window. `gain` is each channel's sensitivity.
    mutating func meanCounts(of compositions: [Composition], exposure: LineExposure, gain: [Double],
                             low: inout [Double], high: inout [Double])
    /// The same physics with the tube voltage and the window thresholds moved by `shift` from
    /// this one's (for a detector of `channels` channels at `pitchUm`, drawn from `seed`).
    func shifted(by shift: SpectralShift, channels: Int, pitchUm: Int, seed: UInt64) -> any LinePhysics
}

/// The first model (docs/physics.md, "Spectrum" and "Detector"): a `DualEnergyBeam`'s
/// window transmissions times fixed air counts, channel by channel.
public struct KramersLinePhysics: LinePhysics {
    /// Unattenuated counts per line period of 1 ms at 1000 µA, per window: a 10 ms line at
    /// 1 mA reads about 35,000 and 30,000 in air, below the 16-bit ceiling.
    public var airCountsLow: Double = 3_500
    public var airCountsHigh: Double = 3_000
    private var transmissions = TransmissionCache(beam: DualEnergyBeam())
    /// The tube voltage and the window edges the beam was made with.
    public private(set) var kVp = 100.0, lowFromKeV = 20.0, splitKeV = 52.0

    public init() {}

    /// The same counting over another tube voltage and other window edges.
    public init(kVp: Double, lowFromKeV: Double, splitKeV: Double) {
        self.kVp = kVp; self.lowFromKeV = lowFromKeV; self.splitKeV = splitKeV
        transmissions = TransmissionCache(beam: DualEnergyBeam(spectrum: XRaySpectrum(kVp: kVp), lowFrom: lowFromKeV, split: splitKeV))
    }

    public func shifted(by shift: SpectralShift, channels: Int, pitchUm: Int, seed: UInt64) -> any LinePhysics {
        var p = KramersLinePhysics(kVp: kVp + shift.kVp, lowFromKeV: lowFromKeV + shift.lowThresholdKeV, splitKeV: splitKeV + shift.highThresholdKeV)
        // A moved edge moves photons between the windows and a higher voltage makes more of
        // them: the counts in air follow the spectrum, not only the transmission.
        let before = transmissions.beam.airFluence, after = p.transmissions.beam.airFluence
        p.airCountsLow = airCountsLow * after.low / max(before.low, 1e-300)
        p.airCountsHigh = airCountsHigh * after.high / max(before.high, 1e-300)
        return p
    }

    public mutating func meanCounts(of compositions: [Composition], exposure: LineExposure, gain: [Double],
                                    low: inout [Double], high: inout [Double]) {
        // The same expression, in the same order, as before the seam existed: the samples
        // of a seeded kramers detector must not change by a bit.
        let e = Double(exposure.periodUs) / 1000 * Double(exposure.currentUA) / 1000 * exposure.outputFactor
        for c in compositions.indices {
            let t = transmissions.transmission(compositions[c])
            low[c] = airCountsLow * e * t.low * gain[c]
            high[c] = airCountsHigh * e * t.high * gain[c]
        }
    }
}
