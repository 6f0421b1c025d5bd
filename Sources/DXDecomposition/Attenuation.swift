import DXProtocol
import Foundation

/// What is wrong with a pixel, if anything: flagged pixels carry NaN and are never averaged.
public struct PixelFlags: OptionSet, Sendable, Hashable, Codable {
    public let rawValue: UInt8
    public init(rawValue: UInt8) { self.rawValue = rawValue }
    /// A sample hit 65535: the true count is unknown.
    public static let saturated = PixelFlags(rawValue: 1 << 0)
    /// At or below the dark level: no photons left to measure (log undefined).
    public static let belowDark = PixelFlags(rawValue: 1 << 1)
    /// The line was taken with X-rays off.
    public static let noBeam = PixelFlags(rawValue: 1 << 2)
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
    public var transmissionLow: [Double]
    public var transmissionHigh: [Double]
    /// Variance of `low` and `high` from photon statistics (1/N plus the pedestal's noise):
    /// how far a pixel's value can be trusted.
    public var varianceLow: [Double]
    public var varianceHigh: [Double]
    public var flags: [PixelFlags]
    /// Line period × tube current (ms·mA): how many photons the air reference promised.
    public var exposure: Double

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

    public func process(_ line: ScanLine, periodUs: UInt32, currentUA: UInt32) throws(DecompositionError) -> AttenuationLine {
        let n = line.channels
        guard n == air.low.count else { throw .channelMismatch(expected: air.low.count, got: n) }
        let exposure = Double(periodUs) * Double(max(currentUA, 1))
        // ln of a Poisson count is biased low by about 1/(2N) (N photons, variance N plus the
        // pedestal's noise): corrected per pixel so that photon-starved pixels of thick
        // tissue average to the right attenuation.
        var low = [Double](repeating: .nan, count: n), high = low
        var tLow = low, tHigh = low, varLow = low, varHigh = low
        var flags = [PixelFlags](repeating: [], count: n)
        let beam = line.flags.contains(.xrayOn)
        for c in 0..<n {
            var f: PixelFlags = beam ? [] : [.noBeam]
            let lo = line.low(c), hi = line.high(c)
            if lo == 65535 || hi == 65535 { f.insert(.saturated) }
            let il = Double(lo) - dark.means.low[c], ih = Double(hi) - dark.means.high[c]
            if !f.contains(.saturated) {
                tLow[c] = il / (air.low[c] * exposure)
                tHigh[c] = ih / (air.high[c] * exposure)
            }
            if il < 0.5 || ih < 0.5 { f.insert(.belowDark) }
            if f.isEmpty {
                varLow[c] = (il + 1) / (il * il)
                varHigh[c] = (ih + 1) / (ih * ih)
                low[c] = Foundation.log(air.low[c] * exposure / il) - varLow[c] / 2
                high[c] = Foundation.log(air.high[c] * exposure / ih) - varHigh[c] / 2
            }
            flags[c] = f
        }
        return AttenuationLine(index: line.index, yUm: line.yUm, xUm: line.xUm, low: low, high: high,
                               transmissionLow: tLow, transmissionHigh: tHigh,
                               varianceLow: varLow, varianceHigh: varHigh, flags: flags, exposure: exposure / 1e6)
    }
}
