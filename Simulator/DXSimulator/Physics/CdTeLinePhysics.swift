import Foundation

/// Every number of the second physics model, with its reason in docs/physics.md ("Second
/// model (cdte)"). The switches turn single effects off, for tests that show each one.
public struct CdTeParameters: Sendable, Equatable {
    // The tube.
    public var kVp = 100.0
    /// Angle between the anode face and the central ray.
    public var anodeAngleDegrees = 12.0
    /// Focal spot to detector: sets the angle of each channel's ray in the fan.
    public var sourceToDetectorMM = 800.0
    /// Thomson–Whiddington constant of tungsten, C = 2T·S(T) with the Bethe collision
    /// stopping power at 100 keV (2.05 MeV cm²/g): 4.1 × 10⁵ keV² cm²/g, range 12.6 µm.
    public var thomsonWhiddingtonKeV2Cm2PerG = 4.1e5
    /// K-line photons per unit of the Kramers continuum (T₀ − E)/E at U − 1 = 1.
    public var kLineYield = 6.0
    public var inherentAluminiumMM = 1.0
    public var addedAluminiumMM = 1.0
    /// Samarium K-edge filter (K edge 46.8 keV): 0.10 g/cm² is 133 µm.
    public var samariumGcm2 = 0.10
    public var heelEffect = true

    // The detector.
    public var crystalThicknessMM = 2.0
    /// Channel height along y: the fan's thickness at the detector.
    public var pixelYUm = 1000.0
    public var lowThresholdKeV = 25.0
    public var highThresholdKeV = 50.0
    /// Residual of each channel's threshold trim (standard deviation, keV).
    public var thresholdTrimKeV = 0.4
    public var energyBlur = true
    public var electronicFWHMKeV = 4.0
    public var fanoFactor = 0.1
    public var pairEnergyEV = 4.43
    public var trappingFWHMFraction = 0.03
    public var kEscape = true
    public var chargeSharing = true
    public var chargeCloudRadiusUm = 25.0
    /// Paralyzable dead time of a channel's counter.
    public var deadTimeNs = 25.0
    public var pileUp = true
    /// Incident photons per ms·mA on the central channel, all energies: sets the air counts.
    public var photonsPerMsMA = 9_800.0

    // Scatter.
    /// Scatter-to-primary ratio per g/cm² crossed (0.2 %: 3 % behind 15 g/cm²).
    public var scatterPerGcm2 = 0.002
    /// Standard deviation of the scatter's spread across the detector.
    public var scatterSpreadMM = 25.0

    public init() {}
}

/// The second physics model (`PhysicsModel.cdte`): per channel its own tube spectrum (heel
/// effect) and CdTe response; per line the primary, charge and fluorescence shared with the
/// neighbours, a smooth scatter background, and paralyzable pile-up moving piled pulses into
/// the high window. Cached per composition and channel: a phantom line costs lookups only.
public struct CdTeLinePhysics: LinePhysics {
    public let parameters: CdTeParameters
    let channels: Int
    /// Energy bins used: `firstBin ..< firstBin + bins` of the attenuation tables.
    private let firstBin: Int
    private let bins: Int
    /// Per channel, four weight vectors over the bins (own low, own high, out low, out high):
    /// incident photons per ms·mA × detector response; index ((c·4) + q)·bins + k.
    private let weights: [Double]
    private let scatterKernel: [Double]  // index |Δc|
    private var transmissions: [Composition: Int] = [:]  // → offset in `transmissionPool`
    private var transmissionPool: [Double] = []
    private var primary: [CacheKey: SIMD4<Double>] = [:]
    // Scratch of one line.
    private var own: [SIMD4<Double>]
    private var thickness: [Double]

    private struct CacheKey: Hashable { var composition: Composition; var channel: Int }

    public func shifted(by shift: SpectralShift, channels: Int, pitchUm: Int, seed: UInt64) -> any LinePhysics {
        var p = parameters
        p.kVp += shift.kVp
        p.lowThresholdKeV += shift.lowThresholdKeV
        p.highThresholdKeV += shift.highThresholdKeV
        return CdTeLinePhysics(channels: channels, pitchUm: pitchUm, seed: seed, parameters: p)
    }

    public init(channels: Int, pitchUm: Int, seed: UInt64, parameters: CdTeParameters = CdTeParameters()) {
        self.parameters = parameters
        self.channels = channels
        let p = parameters
        let pitch = Double(max(pitchUm, 1))
        var trim = SplitMix64(seed: seed ^ 0xCD7E_0001)
        // The central ray's spectrum fixes the normalisation: photonsPerMsMA on its channel.
        let central = ThickTargetSpectrum(parameters: p, takeOffDegrees: p.anodeAngleDegrees)
        let centralTotal = central.fluence.reduce(0, +)
        let nE = central.fluence.count
        var responses: [[CdTeResponse.Counts]] = []
        var spectra: [[Double]] = []
        for c in 0..<channels {
            // Channel 0 lies on the anode side: its ray leaves the target at the smallest angle.
            let xMM = (Double(c) - Double(channels - 1) / 2) * pitch / 1000
            let phi = atan(xMM / p.sourceToDetectorMM)
            let takeOff = p.heelEffect ? p.anodeAngleDegrees + phi * 180 / .pi : p.anodeAngleDegrees
            let s = p.heelEffect ? ThickTargetSpectrum(parameters: p, takeOffDegrees: takeOff).fluence : central.fluence
            // A flat detector: fluence per pixel falls as cos³ of the ray's angle.
            let geometry = p.heelEffect ? pow(cos(phi), 3) : 1
            spectra.append(s.map { $0 / centralTotal * p.photonsPerMsMA * geometry })
            let response = CdTeResponse(parameters: p,
                                        lowThresholdKeV: p.lowThresholdKeV + p.thresholdTrimKeV * trim.gaussian(),
                                        highThresholdKeV: p.highThresholdKeV + p.thresholdTrimKeV * trim.gaussian(),
                                        pixelXUm: pitch)
            let first = Double(AttenuationTable.firstEnergyKeV)
            responses.append((0..<nE).map { response.counts(incidentKeV: first + Double($0)) })
        }
        // Bins that carry nothing measurable anywhere (below ~15 keV after the filters) are skipped.
        var peak = 0.0
        for s in spectra { peak = max(peak, s.max() ?? 0) }
        let useful = (0..<nE).filter { k in spectra.contains { $0[k] > 1e-7 * peak } }
        firstBin = useful.first ?? 0
        bins = max(0, (useful.last ?? -1) - firstBin + 1)
        var w = [Double](repeating: 0, count: channels * 4 * bins)
        for c in 0..<channels {
            for k in 0..<bins {
                let n = spectra[c][firstBin + k], r = responses[c][firstBin + k]
                let base = c * 4 * bins + k
                w[base] = n * r.ownLow
                w[base + bins] = n * r.ownHigh
                w[base + 2 * bins] = n * r.outLow
                w[base + 3 * bins] = n * r.outHigh
            }
        }
        weights = w
        let sigma = p.scatterSpreadMM * 1000 / pitch
        let reach = Int((3 * sigma).rounded(.up))
        let raw = (0...reach).map { Foundation.exp(-0.5 * Double($0 * $0) / (sigma * sigma)) }
        // Normalised over an infinite detector, so scatter aimed past the ends is lost.
        let norm = raw[0] + 2 * raw.dropFirst().reduce(0, +)
        scatterKernel = raw.map { $0 / norm }
        own = Array(repeating: .zero, count: channels)
        thickness = Array(repeating: 0, count: channels)
    }

    /// exp(−Σ μ a) over the used bins, cached per composition.
    private mutating func transmissionOffset(_ c: Composition) -> Int {
        if let o = transmissions[c] { return o }
        if transmissionPool.count >= 4096 * max(bins, 1) { transmissions.removeAll(keepingCapacity: true); transmissionPool.removeAll(keepingCapacity: true) }
        let o = transmissionPool.count
        for k in 0..<bins {
            let i = firstBin + k
            transmissionPool.append(Foundation.exp(-(AttenuationTable.hydroxyapatite[i] * c.hydroxyapatite
                + AttenuationTable.lean[i] * c.lean + AttenuationTable.fat[i] * c.fat)))
        }
        transmissions[c] = o
        return o
    }

    /// Own low, own high, out low, out high counts per ms·mA of channel `ch` behind `c`.
    mutating func primaryCounts(_ c: Composition, channel ch: Int) -> SIMD4<Double> {
        let key = CacheKey(composition: c, channel: ch)
        if let v = primary[key] { return v }
        let o = transmissionOffset(c)
        var v = SIMD4<Double>.zero
        weights.withUnsafeBufferPointer { w in
            transmissionPool.withUnsafeBufferPointer { t in
                let base = ch * 4 * bins
                for k in 0..<bins {
                    let tk: Double = t[o + k]
                    let wk = SIMD4<Double>(w[base + k], w[base + bins + k], w[base + 2 * bins + k], w[base + 3 * bins + k])
                    v += wk * tk
                }
            }
        }
        if primary.count >= 32_768 { primary.removeAll(keepingCapacity: true) }
        primary[key] = v
        return v
    }

    public mutating func meanCounts(of compositions: [Composition], exposure: LineExposure, gain: [Double],
                                    low: inout [Double], high: inout [Double]) {
        let n = min(compositions.count, channels)
        let p = parameters
        var anyTissue = false
        for c in 0..<n {
            own[c] = primaryCounts(compositions[c], channel: c)
            let comp = compositions[c]
            thickness[c] = comp.hydroxyapatite + comp.lean + comp.fat
            if thickness[c] > 0 { anyTissue = true }
        }
        let msMA = exposure.msMA
        let periodS = Double(exposure.periodUs) * 1e-6
        let tau = p.deadTimeNs * 1e-9
        for c in 0..<n {
            // What reaches channel c: its own share, and half of what each neighbour sent out.
            var l = own[c].x, h = own[c].y
            if c > 0 { l += 0.5 * own[c - 1].z; h += 0.5 * own[c - 1].w }
            if c + 1 < n { l += 0.5 * own[c + 1].z; h += 0.5 * own[c + 1].w }
            low[c] = l; high[c] = h
        }
        if anyTissue && p.scatterPerGcm2 > 0 {
            // Scatter made along ray j ∝ (thickness crossed) × (primary that gets through),
            // spread over the detector by a wide kernel; spectrum taken as the primary's.
            let reach = scatterKernel.count - 1
            var sourceLow = [Double](repeating: 0, count: n), sourceHigh = sourceLow
            for j in 0..<n {
                sourceLow[j] = p.scatterPerGcm2 * thickness[j] * low[j]
                sourceHigh[j] = p.scatterPerGcm2 * thickness[j] * high[j]
            }
            for c in 0..<n {
                var sl = 0.0, sh = 0.0
                for j in max(0, c - reach)...min(n - 1, c + reach) where thickness[j] > 0 {
                    let k = scatterKernel[abs(c - j)]
                    sl += k * sourceLow[j]; sh += k * sourceHigh[j]
                }
                low[c] += sl; high[c] += sh
            }
        }
        for c in 0..<n {
            let g = c < gain.count ? gain[c] : 1
            var l = low[c] * msMA * g, h = high[c] * msMA * g
            if p.pileUp && periodS > 0 {
                // Paralyzable counter (Knoll): m = n·e^{−nτ}. A recorded pulse is a single
                // photon if nothing else came within τ (e^{−nτ}); otherwise it is piled and
                // reads at the summed energy, ≥ 2 T₁ = T₂: the high window.
                let x = (l + h) / periodS * tau
                let single = Foundation.exp(-x)
                let piled = (l + h) * single * (1 - single)
                l *= single * single
                h = h * single * single + piled
            }
            low[c] = l; high[c] = h
        }
    }
}
