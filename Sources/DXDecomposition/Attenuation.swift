import DXProtocol
import Foundation

/// What is wrong with a pixel, if anything. Saturated, below-dark and no-beam pixels carry
/// NaN and are never averaged; a photon-starved pixel is measured (with more noise) and counted.
public struct PixelFlags: OptionSet, Sendable, Hashable, Codable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// A sample hit 65535: the true count is unknown.
    public static let saturated = PixelFlags(rawValue: 1 << 0)
    /// Within the pedestal's noise of the dark level in a window (`PreparedAttenuation.noPhotons`):
    /// no photons left to measure: metal in the beam, or far too much tissue for the exposure.
    public static let belowDark = PixelFlags(rawValue: 1 << 1)
    /// The line was taken with X-rays off.
    public static let noBeam = PixelFlags(rawValue: 1 << 2)
    /// Fewer than `PreparedAttenuation.minimumPhotons` above the pedestal in a window: the
    /// pixel's relative noise exceeds 20 %. It is still measured, with the low-count
    /// correction of its logarithm, and enters ROI means like any other pixel (leaving it out
    /// would bias the mean: the pixels left out are those whose noise went one way); ROIs
    /// count such pixels (`ROIResult.lowCountPixels`).
    public static let photonStarved = PixelFlags(rawValue: 1 << 3)

    /// Flags that leave a pixel without a number.
    public static let unmeasured: PixelFlags = [.saturated, .belowDark, .noBeam]

    /// The pixel carries numbers (it may still be photon-starved).
    @inline(__always) public var isMeasured: Bool { isDisjoint(with: .unmeasured) }

    /// A pixel's flags from its two samples, their counts above dark as recorded and after the
    /// rate loss and scatter are taken off (`low`, `high`), the channel's no-photon floors and
    /// whether the beam was off: the one rule for every path of `PreparedAttenuation`.
    @inline(__always)
    static func of(samples lo: UInt16, _ hi: UInt16, recorded recordedLow: Double, _ recordedHigh: Double,
                   counts low: Double, _ high: Double, floors floorLow: Double, _ floorHigh: Double, beamOff: UInt8) -> UInt8 {
        let saturated = lo == 65535 || hi == 65535 ? PixelFlags.saturated.rawValue : 0
        let below = recordedLow < floorLow || recordedHigh < floorHigh || low <= 0 || high <= 0
        let starved = recordedLow < PreparedAttenuation.minimumPhotons || recordedHigh < PreparedAttenuation.minimumPhotons
        return beamOff | saturated | (below ? PixelFlags.belowDark.rawValue : (starved ? PixelFlags.photonStarved.rawValue : 0))
    }
}

/// One line as log attenuations per window: L = ln(I₀ / I), dark-subtracted, I₀ from the
/// air reference scaled to this line's period and tube current.
public struct AttenuationLine: Sendable {
    public var index: UInt32
    public var yUm: Int32
    public var xUm: Int32
    public var low: [Double]
    public var high: [Double]
    /// Dark-subtracted counts over the expected air counts (may be ≤ 0 in photon-starved
    /// pixels); averaging these, then taking the log, is unbiased where averaging logs is not.
    /// Empty when the stage was prepared without them (the live path has no use for them).
    public var transmissionLow: [Double]
    public var transmissionHigh: [Double]
    /// The photon noise of those transmissions (variance; empty with them): what a pooled
    /// measurement of many pixels can be trusted to.
    public var transmissionVarianceLow: [Double]
    public var transmissionVarianceHigh: [Double]
    /// Variance of `low` and `high` from photon statistics (1/N plus the pedestal's noise):
    /// how far a pixel's value can be trusted.
    public var varianceLow: [Double]
    public var varianceHigh: [Double]
    public var flags: [PixelFlags]
    /// Line period × tube current (ms·mA): how many photons the air reference promised.
    public var exposure: Double
    /// Covariance of `low` and `high` (empty: none). The unmixed low window takes a share of
    /// the high window's counts off (`LowWindowMixing`), and a channel's map adds a share of its
    /// high log: both make the two windows' noise move together (the second physics model's
    /// detector: correlation −0.13 to −0.18 over lean 20–30 g/cm²; docs/physics.md, "The two
    /// windows' noise together").
    public var covariance: [Double] = []

    /// The covariance of pixel `c`'s two windows (0 where the line carries none).
    @inline(__always)
    public func covariance(at c: Int) -> Double { covariance.isEmpty ? 0 : covariance[c] }

    public var channels: Int { low.count }
}

/// Dark subtraction, air normalisation and the logarithm: the first stage of the pipeline.
public struct AttenuationStage: Sendable {
    public let dark: DarkReference
    public let air: AirReference

    public init(dark: DarkReference, air: AirReference) {
        self.dark = dark
        self.air = air
    }

    /// The references made from a dark scan's and an air scan's lines.
    public init(darkLines: [ScanLine], airLines: [ScanLine], airPeriodUs: UInt32, airCurrentUA: UInt32) throws(DecompositionError) {
        let dark = try DarkReference(lines: darkLines)
        self.init(dark: dark, air: try AirReference(lines: airLines, dark: dark, periodUs: airPeriodUs, currentUA: airCurrentUA))
    }



    /// The stage for one scan's line period and tube current, with everything per channel
    /// that does not change from line to line worked out once.
    /// `transmissions`: also keep each pixel's transmission (for calibration).
    /// `response`: each channel's spectral response from the calibration, applied to the log
    /// attenuations (ignored when it was made for another number of channels).
    /// `deadTimeUs`: the detector's dead time from the calibration (`CountRate`); the rate loss
    /// of the air reference and of every pixel is undone (0: none).
    /// `scatter`: the scatter in the fan from the calibration (`ScatterModel`), taken off each line.
    /// `lowWindowMixing`: the high-energy share of the low window from the calibration
    /// (`LowWindowMixing`), taken out of each pixel's low window (0: none).
    public func prepared(periodUs: UInt32, currentUA: UInt32, transmissions: Bool = true,
                         response: ChannelResponse? = nil, deadTimeUs: Double = 0, scatter: ScatterModel? = nil,
                         lowWindowMixing: Double = 0) -> PreparedAttenuation {
        PreparedAttenuation(dark: dark, air: air, periodUs: periodUs, currentUA: currentUA, transmissions: transmissions,
                            response: response, deadTimeUs: deadTimeUs, scatter: scatter, lowWindowMixing: lowWindowMixing)
    }

    /// The stage for `configuration` with what `calibration` knows of the detector (each
    /// channel's response, the dead time): the one way the live and offline paths decompose.
    public func prepared(for configuration: ScanConfiguration, calibration: Calibration, transmissions: Bool = false) -> PreparedAttenuation {
        prepared(periodUs: configuration.linePeriodUs, currentUA: configuration.tubeCurrentUA, calibration: calibration, transmissions: transmissions)
    }

    public func prepared(periodUs: UInt32, currentUA: UInt32, calibration: Calibration, transmissions: Bool = false) -> PreparedAttenuation {
        prepared(periodUs: periodUs, currentUA: currentUA, transmissions: transmissions,
                 response: calibration.channelResponse, deadTimeUs: calibration.deadTimeUs ?? 0, scatter: calibration.scatter,
                 lowWindowMixing: calibration.lowWindowMixing ?? 0)
    }

    public func process(_ line: ScanLine, periodUs: UInt32, currentUA: UInt32) throws(DecompositionError) -> AttenuationLine {
        try prepared(periodUs: periodUs, currentUA: currentUA).process(line)
    }
}

/// `AttenuationStage` for a fixed period and current: per channel the dark levels, the
/// expected air counts I₀ and ln I₀, so that a pixel costs a subtraction, a logarithm and a
/// few multiplications.
public struct PreparedAttenuation: Sendable {
    let darkLow: [Double], darkHigh: [Double]
    /// 1 / I₀: transmissions by multiplication.
    let i0Low: [Double], i0High: [Double]
    let lnI0Low: [Double], lnI0High: [Double]
    /// Line period × tube current (ms·mA).
    public let exposure: Double
    /// Below this many counts above the pedestal a pixel's relative noise exceeds 20 %.
    public static let minimumPhotons = 25.0
    /// Below this many of the pedestal's standard deviations above it (and at least
    /// `noPhotons` counts) a window holds nothing the pedestal's own noise could not make: no
    /// photons (metal, or far too much tissue). The pixel is `belowDark` and carries no number.
    /// At 5σ a pixel behind metal passes one time in 3.5 million; a pixel of 12 photons is
    /// left out about 2 % of the time (docs/physics.md: the bias that leaves).
    public static let noPhotonSigmas = 5.0
    public static let noPhotons = 3.0
    public let keepsTransmissions: Bool

    /// Each channel's scale of its log attenuations (ChannelResponse), and its square for the
    /// variances.
    let scaleLow: [Double], scaleHigh: [Double]
    /// Each channel's no-photon threshold (counts above dark).
    let floorLow: [Double], floorHigh: [Double]

    /// τ / T of this scan's line period (0: no rate correction).
    let deadTimeFraction: Double
    /// The scatter kernel (n × n, empty: no scatter correction) and its amplitudes per window.
    let scatterKernel: [Double]
    let scatterLow: Double, scatterHigh: Double
    let scatterThickness: ScatterThickness
    /// Whether the scatter is computed again from the primary alone: so measured since
    /// 2026-12-05 (calibrations with `ScatterModel.thickness`); not for older ones, whose
    /// amplitude was measured from the recorded counts.
    let scatterFromPrimary: Bool
    /// The fraction of the low window's air counts that are high-energy photons, taken out of
    /// every pixel's low window before its logarithm (`LowWindowMixing`; 0: none), and each
    /// channel's air counts low over high, which turns a high-window count into the low
    /// window's share of it.
    let mixing: Double
    let airLowOverHigh: [Double]
    /// Each channel's low window's share of its high window's log (`ChannelResponse.lowCross`;
    /// empty: none).
    let crossLow: [Double]
    /// The square of each channel's own low log in its map (`ChannelResponse.lowSquare`;
    /// empty: none).
    let squareLow: [Double]

    init(dark: DarkReference, air: AirReference, periodUs: UInt32, currentUA: UInt32, transmissions: Bool,
         response: ChannelResponse? = nil, deadTimeUs: Double = 0, scatter: ScatterModel? = nil, lowWindowMixing: Double = 0) {
        keepsTransmissions = transmissions
        let channels = dark.means.low.count
        let r = response.flatMap { $0.fits(channels: channels) ? $0 : nil } ?? .identity(channels: channels)
        scaleLow = r.low
        scaleHigh = r.high
        crossLow = r.lowCross.flatMap { $0.contains { $0 != 0 } ? $0 : nil } ?? []
        squareLow = r.lowSquare.flatMap { $0.contains { $0 != 0 } ? $0 : nil } ?? []
        let e = Double(periodUs) * Double(max(currentUA, 1))
        darkLow = dark.means.low
        darkHigh = dark.means.high
        floorLow = dark.noise?.low.map { max(Self.noPhotons, Self.noPhotonSigmas * $0) } ?? Array(repeating: Self.noPhotons, count: channels)
        floorHigh = dark.noise?.high.map { max(Self.noPhotons, Self.noPhotonSigmas * $0) } ?? Array(repeating: Self.noPhotons, count: channels)
        let trueAir = air.corrected(deadTimeUs: deadTimeUs)
        deadTimeFraction = deadTimeUs > 0 && periodUs > 0 ? deadTimeUs / Double(periodUs) : 0
        i0Low = trueAir.low.map { 1 / ($0 * e) }
        i0High = trueAir.high.map { 1 / ($0 * e) }
        lnI0Low = trueAir.low.map { Foundation.log($0 * e) }
        lnI0High = trueAir.high.map { Foundation.log($0 * e) }
        exposure = e / 1e6
        scatterKernel = scatter?.kernel(channels: channels) ?? []
        scatterLow = scatter?.amplitudeLow ?? 0
        scatterHigh = scatter?.amplitudeHigh ?? 0
        scatterThickness = scatter?.thickness ?? .highWindow
        scatterFromPrimary = scatter?.thickness != nil
        mixing = lowWindowMixing.isFinite && lowWindowMixing > 0 && lowWindowMixing < 1 ? lowWindowMixing : 0
        airLowOverHigh = mixing > 0 ? zip(trueAir.low, trueAir.high).map { $1 > 0 ? $0 / $1 : 0 } : []
    }

    /// One line's counts with the dark level taken off and the rate loss undone, which of them
    /// hold a count (not saturated, above the no-photon floor, X-rays on), and the air counts
    /// expected at this exposure: what scatter is measured and estimated from.
    func trueCounts(_ line: ScanLine) -> (low: [Double], high: [Double], valid: [Bool], airLow: [Double], airHigh: [Double])? {
        let n = channels
        guard line.channels == n, line.samples.count == 2 * n else { return nil }
        var low = [Double](repeating: 0, count: n), high = low, valid = [Bool](repeating: false, count: n)
        let on = line.flags.contains(.xrayOn)
        for c in 0..<n {
            let lo = line.samples[2 * c], hi = line.samples[2 * c + 1]
            var il = Double(lo) - darkLow[c], ih = Double(hi) - darkHigh[c]
            valid[c] = on && lo != 65535 && hi != 65535 && il >= floorLow[c] && ih >= floorHigh[c]
            if deadTimeFraction > 0 && il > 0 && ih > 0 { (il, ih) = CountRate.trueCounts(low: il, high: ih, a: deadTimeFraction) }
            low[c] = il
            high[c] = ih
        }
        return (low, high, valid, i0Low.map { 1 / $0 }, i0High.map { 1 / $0 })
    }

    /// Each channel's scatter source t·I (`ScatterModel`) in this line, and which channels held
    /// a count to compute it from (a saturated or unmeasured channel's source is 0 here); nil
    /// without a scatter model or for a line of another width.
    public func scatterSources(_ line: ScanLine) -> ScatterSources? {
        guard !scatterKernel.isEmpty, let counts = trueCounts(line) else { return nil }
        let s = ScatterModel.sources(low: counts.low, high: counts.high, valid: counts.valid, lnI0Low: lnI0Low, lnI0High: lnI0High,
                                     thickness: scatterThickness)
        return ScatterSources(low: s.low, high: s.high, measured: counts.valid, exposure: exposure,
                              countsLow: counts.low, countsHigh: counts.high)
    }

    /// The scatter each channel received, per window, from the line's sources (`ScatterModel`):
    /// computed again from the primary alone where the sources' counts are known.
    func scatter(from sources: ScatterSources) -> (low: [Double], high: [Double]) {
        let n = channels
        guard sources.low.count == n, sources.high.count == n else { return ([Double](repeating: 0, count: n), [Double](repeating: 0, count: n)) }
        var s = (low: sources.low, high: sources.high)
        if scatterFromPrimary, sources.countsLow.count == n, sources.countsHigh.count == n, sources.measured.count == n {
            s = ScatterModel.primarySources(low: sources.countsLow, high: sources.countsHigh, valid: sources.measured,
                                            lnI0Low: lnI0Low, lnI0High: lnI0High, thickness: scatterThickness,
                                            kernel: scatterKernel, amplitudeLow: scatterLow, amplitudeHigh: scatterHigh)
        }
        return ScatterModel.received(kernel: scatterKernel, amplitudeLow: scatterLow, amplitudeHigh: scatterHigh, low: s.low, high: s.high)
    }

    public var channels: Int { darkLow.count }

    /// One line's log attenuations. `sources`: the line's scatter sources where the caller knows
    /// them better than the line does (a calibration pass whose channels saturated, filled from
    /// a pass of less exposure at the same place: `CalibrationFit`); by default the line's own.
    public func process(_ line: ScanLine, scatterSources sources: ScatterSources? = nil) throws(DecompositionError) -> AttenuationLine {
        let n = line.channels
        guard n == channels, line.samples.count == 2 * n else { throw .channelMismatch(expected: channels, got: n) }
        if deadTimeFraction == 0 && scatterKernel.isEmpty && !keepsTransmissions && mixing == 0 && crossLow.isEmpty && squareLow.isEmpty { return plain(line) }
        // One scratch block for the six outputs, filled by one loop over raw pointers, then
        // copied into the line's arrays.
        let out = UnsafeMutablePointer<Double>.allocate(capacity: 9 * n)
        defer { out.deallocate() }
        let flagBits = UnsafeMutablePointer<UInt8>.allocate(capacity: n)
        defer { flagBits.deallocate() }
        let beam: UInt8 = line.flags.contains(.xrayOn) ? 0 : PixelFlags.noBeam.rawValue
        let scattered = scatterKernel.isEmpty ? nil : (sources ?? scatterSources(line)).map { scatter(from: $0) }
        let unmeasuredBits = PixelFlags.unmeasured.rawValue
        line.samples.withUnsafeBufferPointer { samples in
            darkLow.withUnsafeBufferPointer { dL in darkHigh.withUnsafeBufferPointer { dH in
            i0Low.withUnsafeBufferPointer { iL in i0High.withUnsafeBufferPointer { iH in
            lnI0Low.withUnsafeBufferPointer { lnL in lnI0High.withUnsafeBufferPointer { lnH in
            scaleLow.withUnsafeBufferPointer { sL in scaleHigh.withUnsafeBufferPointer { sH in
            floorLow.withUnsafeBufferPointer { fL in floorHigh.withUnsafeBufferPointer { fH in
                let low = out, high = out + n, tLow = out + 2 * n, tHigh = out + 3 * n, varLow = out + 4 * n, varHigh = out + 5 * n
                let tVarLow = out + 6 * n, tVarHigh = out + 7 * n, covLH = out + 8 * n
                let keeps = keepsTransmissions, a = deadTimeFraction, mix = mixing, unmix = 1 / (1 - mixing)
                let crosses = !crossLow.isEmpty
                let squares = !squareLow.isEmpty
                for c in 0..<n {
                    let f: UInt8
                    let lo = samples[2 * c], hi = samples[2 * c + 1]
                    var il = Double(lo) - dL[c], ih = Double(hi) - dH[c]
                    // The rate loss undone (`CountRate`); the noise stays that of the counts
                    // recorded (below, through their relative variance).
                    let recordedLow = il, recordedHigh = ih
                    if a > 0 && il > 0 && ih > 0 { (il, ih) = CountRate.trueCounts(low: il, high: ih, a: a) }
                    // Scatter taken off (`ScatterModel`); what is left is the primary, whose
                    // relative noise grows by what was taken.
                    let beforeLow = il, beforeHigh = ih
                    if let scattered { il -= scattered.low[c]; ih -= scattered.high[c] }
                    // The high window's photons in the low one taken out (`LowWindowMixing`):
                    // f of the low window's air counts, attenuated as the high window's are.
                    let mixedLow = il, share = mix > 0 ? mix * airLowOverHigh[c] : 0
                    if mix > 0 { il = (il - share * ih) * unmix }
                    let own = PixelFlags.of(samples: lo, hi, recorded: recordedLow, recordedHigh, counts: il, ih, floors: fL[c], fH[c], beamOff: beam)
                        | (mix > 0 ? Self.unmixedFlags(il, share: share, unmix: unmix, recorded: recordedLow, recordedHigh,
                                                       before: beforeLow, beforeHigh) : 0)
                    f = own & PixelFlags.belowDark.rawValue != 0 ? own & ~PixelFlags.photonStarved.rawValue : own
                    if lo == 65535 || hi == 65535 {
                        tLow[c] = .nan
                        tHigh[c] = .nan
                        tVarLow[c] = .nan
                        tVarHigh[c] = .nan
                    } else {
                        tLow[c] = il * iL[c]
                        tHigh[c] = ih * iH[c]
                        if keeps {
                            // Poisson variance of the count (at least the pedestal's noise),
                            // scaled with the count where its rate loss was undone.
                            let gl = recordedLow > 0 ? il / recordedLow : 1, gh = recordedHigh > 0 ? ih / recordedHigh : 1
                            tVarHigh[c] = (max(recordedHigh, 0) + 1) * gh * gh * iH[c] * iH[c]
                            if mix > 0 {
                                // Both windows' noise in the unmixed count.
                                let gm = recordedLow > 0 ? mixedLow / recordedLow : 1
                                let counts = (max(recordedLow, 0) + 1) * gm * gm + share * share * (max(recordedHigh, 0) + 1) * gh * gh
                                tVarLow[c] = counts * unmix * unmix * iL[c] * iL[c]
                            } else {
                                tVarLow[c] = (max(recordedLow, 0) + 1) * gl * gl * iL[c] * iL[c]
                            }
                        }
                    }
                    if f & unmeasuredBits == 0 {
                        // ln of a Poisson count is biased low by about 1/(2N) (N photons,
                        // variance N plus the pedestal's noise): corrected per pixel so that
                        // photon-starved pixels of thick tissue average to the right value
                        // (docs/physics.md: the residual bias is under 0.002 from 12 counts on).
                        let rl = 1 / recordedLow, rh = 1 / recordedHigh
                        let ql = beforeLow / il, qh = beforeHigh / ih
                        var vl = (recordedLow + 1) * rl * rl * ql * ql
                        let vh = (recordedHigh + 1) * rh * rh * qh * qh
                        var own = 0.0
                        if mix > 0 {
                            // The unmixed count's variance: the low window's own, and the
                            // high window's share taken from it (var T_L + f²·var T_H)/(1 − f)²,
                            // relative to the count that is left.
                            let countsLow = (recordedLow + 1) * rl * rl * beforeLow * beforeLow
                            let countsHigh = (recordedHigh + 1) * rh * rh * beforeHigh * beforeHigh
                            vl = (countsLow + share * share * countsHigh) * unmix * unmix / (il * il)
                            // The share taken off is the high window's own noise: the two logs
                            // move together, cov = −f·var T_H/(1 − f), relative to both counts.
                            own = -share * unmix * countsHigh / (il * ih)
                        }
                        // This channel's response onto the detector's mean: a scale.
                        let kl = sL[c], kh = sH[c]
                        varLow[c] = vl * kl * kl
                        varHigh[c] = vh * kh * kh
                        covLH[c] = own * kl * kh
                        low[c] = (lnL[c] - FastLog.ln(il) - vl / 2) * kl
                        high[c] = (lnH[c] - FastLog.ln(ih) - vh / 2) * kh
                        if squares {
                            // The whole map: the channel's own low log, its high log and the
                            // square of its own (less the noise's share of it, var, so that the
                            // square is unbiased); the variance through the map's slope.
                            let ownLow = lnL[c] - FastLog.ln(il) - vl / 2, ownHigh = lnH[c] - FastLog.ln(ih) - vh / 2
                            let b = crosses ? crossLow[c] : 0, q = squareLow[c]
                            low[c] = kl * ownLow + b * ownHigh + q * (ownLow * ownLow - vl)
                            let slope = kl + 2 * q * ownLow
                            varLow[c] = slope * slope * vl + b * b * vh + 2 * slope * b * own
                            covLH[c] = kh * (slope * own + b * vh)
                        } else if crosses {
                            // The low window's share of the high window's own log.
                            let b = crossLow[c]
                            low[c] += b * (lnH[c] - FastLog.ln(ih) - vh / 2)
                            varLow[c] += b * b * vh + 2 * kl * b * own
                            covLH[c] = kh * (kl * own + b * vh)
                        }
                    } else {
                        low[c] = .nan; high[c] = .nan; varLow[c] = .nan; varHigh[c] = .nan; covLH[c] = .nan
                    }
                    flagBits[c] = f
                }
            } } } } } } } } } }
        }
        func array(_ k: Int) -> [Double] { Array(UnsafeBufferPointer(start: out + k * n, count: n)) }
        let flags = [PixelFlags](unsafeUninitializedCapacity: n) { buffer, count in
            for c in 0..<n { buffer[c] = PixelFlags(rawValue: flagBits[c]) }
            count = n
        }
        return AttenuationLine(index: line.index, yUm: line.yUm, xUm: line.xUm, low: array(0), high: array(1),
                               transmissionLow: keepsTransmissions ? array(2) : [], transmissionHigh: keepsTransmissions ? array(3) : [],
                               transmissionVarianceLow: keepsTransmissions ? array(6) : [],
                               transmissionVarianceHigh: keepsTransmissions ? array(7) : [],
                               varianceLow: array(4), varianceHigh: array(5), flags: flags, exposure: exposure, covariance: array(8))
    }
}

extension PreparedAttenuation {
    /// The flags an unmixed low count adds (`LowWindowMixing`), judged by its own noise rather
    /// than by the count recorded: below dark where it is less than `noPhotonSigmas` of the
    /// subtraction's own noise (f·I₀L/I₀H·√I_H / (1 − f): what taking the high window's share
    /// away can leave where the low window holds none of its own) or under `noPhotons`;
    /// photon-starved where its noise is that of fewer than `minimumPhotons` photons. Without
    /// this the count left could be tiny but positive, its relative variance unbounded, and
    /// the log's bias correction (−var/2) a number of any size (an outside review: −18.6 on
    /// average for 20 photons of its own under 58 mixed in). The result is OR-ed into the
    /// flags `PixelFlags.of` gives; below dark clears starved.
    @inline(__always)
    static func unmixedFlags(_ unmixed: Double, share: Double, unmix: Double, recorded recordedLow: Double, _ recordedHigh: Double,
                             before beforeLow: Double, _ beforeHigh: Double) -> UInt8 {
        guard recordedLow > 0, recordedHigh > 0 else { return 0 }
        let countsHigh = (recordedHigh + 1) * (beforeHigh / recordedHigh) * (beforeHigh / recordedHigh)
        let countsLow = (recordedLow + 1) * (beforeLow / recordedLow) * (beforeLow / recordedLow)
        let subtraction = share * countsHigh.squareRoot() * unmix
        if !(unmixed >= max(noPhotons, noPhotonSigmas * subtraction)) { return PixelFlags.belowDark.rawValue }
        let variance = (countsLow + share * share * countsHigh) * unmix * unmix
        return unmixed * unmixed < minimumPhotons * variance ? PixelFlags.photonStarved.rawValue : 0
    }

    /// `process` where there is no rate loss to undo, no scatter to take off and no transmission
    /// to keep (the first physics model, a unit whose calibration measured neither, every
    /// benchmark line): the same arithmetic in the same order as the general loop, so the same
    /// bits (FastPathEquivalenceTests), without its branches, so that the compiler vectorises
    /// it (issue 18, docs/PERFORMANCE.md: attenuation alone 54 → 71 M pixels/s). The flags in
    /// one pass over the counts; each window's values in another (`windowValues`), every
    /// channel computed; then NaN where the flags say the pixel has no number. The scatter's and
    /// the rate's factors of the general loop (`before / il`) are exactly 1 here and are left
    /// out (a product with 1 is exact).
    func plain(_ line: ScanLine) -> AttenuationLine {
        let n = channels
        let beam: UInt8 = line.flags.contains(.xrayOn) ? 0 : PixelFlags.noBeam.rawValue
        let unmeasuredBits = PixelFlags.unmeasured.rawValue
        // The loops write through plain pointers taken once: through the `inout` buffer the
        // compiler must assume a store may change the buffer itself, and does not vectorise.
        let flags = [PixelFlags](unsafeUninitializedCapacity: n) { buffer, count in
            count = n
            guard let out = buffer.baseAddress else { return }
            line.samples.withUnsafeBufferPointer { samples in
            darkLow.withUnsafeBufferPointer { dL in darkHigh.withUnsafeBufferPointer { dH in
            floorLow.withUnsafeBufferPointer { fL in floorHigh.withUnsafeBufferPointer { fH in
                for c in 0..<n {
                    let lo = samples[2 &* c], hi = samples[2 &* c &+ 1]
                    let il = Double(lo) - dL[c], ih = Double(hi) - dH[c]
                    out[c] = PixelFlags(rawValue: PixelFlags.of(samples: lo, hi, recorded: il, ih, counts: il, ih, floors: fL[c], fH[c], beamOff: beam))
                }
            } } } }
            }
        }
        var low = [Double](), high = [Double](), varianceLow = [Double](), varianceHigh = [Double]()
        line.samples.withUnsafeBufferPointer { samples in
        flags.withUnsafeBytes { flagBytes in
            guard let counts = samples.baseAddress, let flagBits = flagBytes.baseAddress?.assumingMemoryBound(to: UInt8.self) else { return }
            // One window's values; the two windows in turn.
            func window(_ offset: Int, dark: [Double], lnI0: [Double], scale: [Double], values: inout [Double], variances: inout [Double]) {
                variances = [Double](unsafeUninitializedCapacity: n) { vBuffer, vCount in
                    vCount = n
                    values = [Double](unsafeUninitializedCapacity: n) { lBuffer, lCount in
                        lCount = n
                        guard let v = vBuffer.baseAddress, let l = lBuffer.baseAddress else { return }
                        dark.withUnsafeBufferPointer { d in lnI0.withUnsafeBufferPointer { ln0 in scale.withUnsafeBufferPointer { k in
                            guard let d = d.baseAddress, let ln0 = ln0.baseAddress, let k = k.baseAddress else { return }
                            Self.windowValues(counts: counts + offset, dark: d, lnI0: ln0, scale: k, values: l, variances: v, n)
                        } } }
                        // The pixels without a number: NaN (their lanes above computed nothing of use).
                        for c in 0..<n where flagBits[c] & unmeasuredBits != 0 { l[c] = .nan; v[c] = .nan }
                    }
                }
            }
            window(0, dark: darkLow, lnI0: lnI0Low, scale: scaleLow, values: &low, variances: &varianceLow)
            window(1, dark: darkHigh, lnI0: lnI0High, scale: scaleHigh, values: &high, variances: &varianceHigh)
        } }
        return AttenuationLine(index: line.index, yUm: line.yUm, xUm: line.xUm, low: low, high: high,
                               transmissionLow: [], transmissionHigh: [], transmissionVarianceLow: [], transmissionVarianceHigh: [],
                               varianceLow: varianceLow, varianceHigh: varianceHigh, flags: flags, exposure: exposure)
    }
}

extension PreparedAttenuation {
    /// One window's log attenuations and their variances for every channel, whatever its
    /// flags (`counts`: the line's samples from this window's first, every second one): the
    /// arithmetic of `process`, in its order. Plain pointers and no branch or select, which is
    /// what the compiler vectorises (a select on the flags in the same loop kept it scalar).
    @inline(never)
    static func windowValues(counts: UnsafePointer<UInt16>, dark: UnsafePointer<Double>, lnI0: UnsafePointer<Double>, scale: UnsafePointer<Double>,
                             values: UnsafeMutablePointer<Double>, variances: UnsafeMutablePointer<Double>, _ n: Int) {
        for c in 0..<n {
            let i = Double(counts[2 &* c]) - dark[c]
            let r = 1 / i
            // ln of a Poisson count is biased low by about 1/(2N): see `process`.
            let variance = (i + 1) * r * r
            let k = scale[c]
            variances[c] = variance * k * k
            values[c] = (lnI0[c] - FastLog.ln(i) - variance / 2) * k
        }
    }
}

/// The natural logarithm of a positive, finite, normal Double, to about 1e-15 relative: the
/// exponent from the bits, the mantissa (scaled into [√½, √2)) by the atanh series. About
/// four times faster than the C library's `log`, which matters at two per pixel.
public enum FastLog {
    ///
    /// Written without branches or integer conversions, so that a loop of them vectorises (SSE2
    /// and AVX2 have no conversion of 64-bit integers to doubles): the exponent is made a double
    /// by placing its bits in the mantissa of 2⁵², exactly; the mantissa's halving is a select.
    /// The same value, bit for bit, as with an integer exponent and a branch. Any other input
    /// (zero, negative, NaN) gives a meaningless number, never a trap.
    @inline(__always)
    public static func ln(_ x: Double) -> Double {
        let bits = x.bitPattern
        // 2⁵² + the biased exponent, less 2⁵² + 1023: the exponent, exactly.
        let exponent = Double(bitPattern: 0x4330_0000_0000_0000 | ((bits >> 52) & 0x7FF)) - 4_503_599_627_371_519.0
        let mantissa = Double(bitPattern: (bits & 0x000F_FFFF_FFFF_FFFF) | 0x3FF0_0000_0000_0000)
        let halve = mantissa > 1.4142135623730951
        let m = halve ? mantissa * 0.5 : mantissa
        let e = halve ? exponent + 1 : exponent
        let s = (m - 1) / (m + 1), s2 = s * s
        let series = 2 + s2 * (2.0 / 3 + s2 * (2.0 / 5 + s2 * (2.0 / 7 + s2 * (2.0 / 9 + s2 * (2.0 / 11 + s2 * (2.0 / 13 + s2 * (2.0 / 15)))))))
        return e * 0.693_147_180_559_945_3 + s * series
    }
}
