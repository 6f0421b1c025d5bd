import DXDecomposition
import DXProtocol
import DXSimulator

/// A scene scanned line by line through the simulator's detector and physics and decomposed
/// by the host's pipeline (`ScanDecomposition`, the live and offline path), with no device,
/// process or clock: analyses are tested over many simulated patients this way. The host's
/// side sees only the lines, never the scene's truth.
public struct TableScanner: Sendable {
    public var detector: Detector
    public let geometry: ScanGeometry
    public private(set) var stage: AttenuationStage?
    public private(set) var calibration: Calibration?
    /// The tube's output relative to the calibration's (a step the air scan must cancel).
    public var outputFactor = 1.0

    public init(seed: UInt64, physics: PhysicsModel = .kramers, channels: Int = 144, pitchUm: Int = 1000) {
        detector = Detector(channels: channels, pitchUm: pitchUm, seed: seed, physics: physics)
        geometry = ScanGeometry(channels: channels, pitchUm: pitchUm)
    }

    /// The lines of one scan of `scene` as the device would send them.
    public mutating func lines(_ scene: any Scene, mode: ScanMode = .dual, _ c: ScanConfiguration, armAngleX10: Int16 = 0) -> [ScanLine] {
        let view = scene.projection(armAngleX10: armAngleX10)
        return (0..<c.lineCount).map { i in
            let y = c.yStartUm + Int32(i) * c.lineStepUm
            let r = detector.readLine(mode: mode, xUm: c.xUm, yUm: y, periodUs: c.linePeriodUs, currentUA: c.tubeCurrentUA, outputFactor: outputFactor,
                                      scene: view)
            var flags: LineFlags = mode == .dark ? [] : [.xrayOn]
            if r.saturated { flags.insert(.saturated) }
            return ScanLine(index: i, yUm: y, xUm: c.xUm, tUs: UInt64(i) * UInt64(c.linePeriodUs), flags: flags, samples: r.samples)
        }
    }

    /// Dark and air references and the calibration phantom, fitted: the daemon's procedure.
    public mutating func calibrate() throws {
        let reference = ScanConfiguration(scanID: 0, mode: .dual, xUm: 200_000, yStartUm: 1_900_000, lineCount: 50, lineStepUm: 1000,
                                          linePeriodUs: 10_000, tubeCurrentUA: 1000, linesPerFrame: 1)
        var dark = reference
        dark.mode = .dark
        let stage = try AttenuationStage(darkLines: lines(EmptyTable(), mode: .dark, dark), airLines: lines(EmptyTable(), reference),
                                         airPeriodUs: reference.linePeriodUs, airCurrentUA: reference.tubeCurrentUA)
        let phantom = StandardPhantoms.calibration
        guard let procedure = CalibrationProcedure(phantom: phantom, travelXUm: 400_000) else { throw DecompositionError.noLines("calibration") }
        var passes = procedure.passes.filter { !CalibrationFit.isScatterPass($0) }.map { CalibrationFit.Pass(configuration: $0, lines: lines(PhantomScene(phantom), $0)) }
        // The scatter passes and the second air scan at a quarter of the current (the dead
        // time) take their photon noise from a stream of their own, so that every other scan's
        // noise is what it was before they were added to the procedure.
        let main = detector
        detector.reseedNoise(0x5CA7_7E12)
        passes += procedure.passes.filter(CalibrationFit.isScatterPass).map { CalibrationFit.Pass(configuration: $0, lines: lines(PhantomScene(phantom), $0)) }
        var lowRate = reference
        lowRate.tubeCurrentUA = 250
        lowRate.lineCount = 100
        let airs = [reference, lowRate].compactMap {
            CountRate.AirMeasurement(lines: lines(EmptyTable(), $0), dark: stage.dark, periodUs: $0.linePeriodUs, currentUA: $0.tubeCurrentUA)
        }
        detector = main
        self.stage = stage
        calibration = try CalibrationFit.run(stage: stage, airs: airs, passes: passes, phantom: phantom, geometry: geometry, source: "TableScanner")
    }

    /// The exposure mode the daemon would choose for `scene` (a scout first, `ExposureModeChooser`)
    /// and the site's scan in that mode.
    public mutating func exposure(for scene: any Scene, _ c: ScanConfiguration, armAngleX10: Int16 = 0) throws -> (ScanConfiguration, ExposureModeChooser.Choice) {
        if calibration == nil { try calibrate() }
        guard let stage else { throw DecompositionError.noLines("calibration") }
        let scout = ExposureModeChooser.scout(of: c)
        let choice = ExposureModeChooser().choose(scout: lines(scene, scout, armAngleX10: armAngleX10), scoutPeriodUs: scout.linePeriodUs,
                                                  scoutCurrentUA: scout.tubeCurrentUA, dark: stage.dark, periodUs: c.linePeriodUs,
                                                  currentUA: c.tubeCurrentUA, bmi: nil, unmixing: calibration?.unmixing,
                                                  boneNoise: calibration?.boneNoise)
        var chosen = c
        chosen.tubeCurrentUA = choice.current(standard: c.tubeCurrentUA)
        return (chosen, choice)
    }

    /// One scan of `scene`, decomposed as the daemon decomposes it (calibrating first if
    /// needed, in the exposure mode a scout chooses unless `chooseMode` is false); `region`
    /// goes into the provenance as an exam would write it.
    public mutating func decompose(_ scene: any Scene, _ config: ScanConfiguration, region: String? = nil, armAngleX10: Int16 = 0,
                                   chooseMode: Bool = true, keep: (ScanLine) -> Bool = { _ in true }) throws -> DecomposedScan {
        if calibration == nil { try calibrate() }
        let c = chooseMode ? try exposure(for: scene, config, armAngleX10: armAngleX10).0 : config
        guard let stage, let calibration else { throw DecompositionError.noLines("calibration") }
        var work = ScanDecomposition(stage: stage, calibration: calibration, geometry: geometry, rois: [], configuration: c)
        for line in lines(scene, c, armAngleX10: armAngleX10) where keep(line) { try work.add(line) }
        var scan = work.decomposed
        scan.provenance.region = region
        scan.provenance.armAngleDeg = Double(armAngleX10) / 10
        return scan
    }
}
