import DXProtocol
import Dispatch
import DXTransport

/// The device's side of a link: where the firmware's frames go.
public protocol DeviceSideLink: Sendable {
    @discardableResult func emit(_ endpoint: Endpoint, _ bytes: [UInt8]) -> Bool
    func disconnect(reason: String)
    func reconnect()
}

extension InMemoryLink.DeviceEnd: DeviceSideLink {}

/// How the simulated unit is built.
public struct SimulatorConfiguration: Sendable {
    public var info: DeviceInfo
    public var seed: UInt64
    /// Time from power-on (or RESET) to IDLE.
    public var bootTime: Duration = .milliseconds(300)
    /// How long the device is gone from the bus after RESET (ICD: back within 3 s).
    public var resetAbsence: Duration = .milliseconds(1200)
    /// Air kerma rate at the table per mA of tube current, for the DAP figure.
    public var kermaRateMGyPerSecondPerMA: Double = 0.05
    /// Thickness of the fan along y at the table.
    public var fanThicknessCm: Double = 0.1
    /// Slow drift of the tube's output, as a fraction per hour since power-on (a warming
    /// tube and an ageing filament): why hosts take an air scan before each measurement.
    public var tubeOutputDriftPerHour: Double = 0.02
    /// Which of the ICD's freedoms (event order, record splitting, ...) this unit uses.
    public var freedoms: LinkFreedoms = .canonical
    /// Test speed only: the watchdog also waits until this much real time has passed since
    /// the last host frame. At N× the watchdog's 1000 ms is 1000/N ms of wall time, less than
    /// a loaded machine can hold a process back; the floor keeps the margin ≥ 10× that
    /// jitter. Host-frame gaps are still measured and reported on device time
    /// (`exposures`, `watchdogForgiven`). Nil (the default, and always at 1×): the ICD's rule.
    public var watchdogWallFloor: Duration?
    /// Which physics model turns the scene into counts (docs/physics.md): the first
    /// (`kramers`) unless a test or `--physics` asks for the second (`cdte`).
    public var physics: PhysicsModel = .kramers

    /// The tube's output relative to power-on, after this long.
    public func tubeOutput(afterUptime t: Duration) -> Double { 1 + tubeOutputDriftPerHour * t.milliseconds / 3_600_000 }

    public static let standardInfo = DeviceInfo(
        model: "DX-1", serial: "DX1-000123", fwMajor: 1, fwMinor: 4, fwPatch: 2,
        channels: 144, pitchUm: 1000, energyLowKeV: 40, energyHighKeV: 70,
        maxLineRateHz: 100, travelXUm: 400_000, travelYUm: 2_000_000, airZoneYUm: 1_900_000,
        watchdogMs: 1000)

    public init(info: DeviceInfo = SimulatorConfiguration.standardInfo, seed: UInt64 = 1) {
        self.info = info
        self.seed = seed
    }
}

/// What the simulator reports about itself for tests and `dexa-sim status`: the facts a
/// safety test needs (when X-rays went on and off, when the host last spoke).
public struct SimulatorSnapshot: Sendable, Codable, Equatable {
    public var state: DeviceState
    public var xrayOn: Bool
    public var interlocks: UInt16
    public var fault: UInt16
    public var xUm: Int32
    public var yUm: Int32
    public var armAngle: Int16
    public var activeScanID: UInt32
    public var dataFramesSent: UInt32
    public var eventsSent: UInt32
    public var commandsReceived: Int
    public var frameErrors: Int
    public var lastHostFrameMs: Double?
    public var lastXrayOnMs: Double?
    public var lastXrayOffMs: Double?
    public var watchdogExpiries: [WatchdogExpiry]
    /// Every exposure since boot (newest 200): when X-rays were on and off, and the longest
    /// gap between host frames meanwhile, all on the device's clock.
    public var exposures: [Exposure] = []
    /// Gaps over watchdog_ms that the test-speed wall floor let pass (always 0 without one).
    public var watchdogForgiven = 0
    /// Data frames lost on purpose (injected drops and `loseFirstDataFrame`), and their lines.
    public var dataFramesLost = 0
    public var dataLinesLost = 0
    public var freedoms: String = ""
    public var commandLog: [String]
    public var uptimeMs: Double
    public var frozen: Bool
    public var plugged: Bool

    public struct Exposure: Sendable, Codable, Equatable {
        public var scanID: UInt32
        public var xrayOnMs: Double
        public var xrayOffMs: Double
        public var longestHostGapMs: Double
        public var durationMs: Double { xrayOffMs - xrayOnMs }
    }

    public struct WatchdogExpiry: Sendable, Codable, Equatable {
        /// Device time of the last host frame before the expiry, and of X-rays off.
        public var lastHostFrameMs: Double
        public var xrayOffMs: Double
    }
}

/// The DX-1 firmware as ICD §3–§6 describe it: states, commands, motion, scans, interlocks,
/// watchdog and faults, on an injected clock. One actor is one unit.
public actor DX1Firmware {
    public let configuration: SimulatorConfiguration
    private let clock: any Clock<Duration>
    private var uptime: Stopwatch
    private var link: (any DeviceSideLink)?
    public var scene: any Scene

    // Device state (ICD §3, §4): the rules are the state machine's; this actor keeps the
    // timers and the link, and carries out what the machine says.
    private var machine: DX1StateMachine
    private var state: DeviceState { machine.state }
    private var interlocks: Interlocks { machine.interlocks }
    private var xrayOn: Bool { machine.xrayOn }
    private var x: Int32 { machine.position.xUm }
    private var y: Int32 { machine.position.yUm }
    private var arm: Int16 { machine.position.armX10 }
    private var fault: FaultCode { machine.fault }
    private var activeScan: ScanConfiguration? { machine.activeScan }
    private var generation = 0
    private var scanTask: Task<Void, Never>?
    private var motionTask: Task<Void, Never>?
    private var watchdogTask: Task<Void, Never>?
    private var bootTask: Task<Void, Never>?

    // Link.
    private var decoder = FrameDecoder()
    private var eventSeq: UInt32 = 0
    private var dataSeq: UInt32 = 0
    private var lastHostFrame: Duration = .zero
    private var lastHostFrameWall = ContinuousClock.now
    private var plugged = true
    private var shaper: LinkShaper
    /// Events raised while a command is handled, when they go out after its response.
    private var heldEvents: [(bytes: [UInt8], releasesData: Bool)]?
    private var busyStatusToggle = false
    /// The detector's readout: the heavy part of a scan, on a thread of its own as on the real
    /// unit, so that neither this actor nor the host's tasks (in one process with the embedded
    /// simulator) wait behind it for a thread of the shared pool.
    private let readoutThread = ReadoutThread()
    private var bootLoaderOnBus = false
    private var exposureGap: Duration = .zero
    private var exposures: [SimulatorSnapshot.Exposure] = []
    private var watchdogForgiven = 0
    private var dataFramesLost = 0
    private var dataLinesLost = 0

    // Sensors and records.
    private var detector: Detector
    private var tubeTemp = 320.0  // tenths of °C
    private var log = FirmwareLog()
    private var droppedLines: UInt32 = 0
    private var commandsReceived = 0
    private var commandLog: [String] = []
    private var lastXrayOn: Duration?
    private var lastXrayOff: Duration?
    private var expiries: [SimulatorSnapshot.WatchdogExpiry] = []

    // Injected faults.
    private var frozen = false
    private var stallUntil: Duration?
    private var dropData = 0
    private var corrupt: [Endpoint: Int] = [:]
    private var garbage: [Endpoint: Int] = [:]
    private var lineRateFactor = 1.0
    private var failedSelfTest: Set<SelfTestComponent> = []
    private var rng: SplitMix64
    // Injected changes of the unit's calibration (docs/qc.md).
    private var outputStep = 0.0
    private var spectrumStep = SpectralShift()
    private var spectrumDrift: (perDay: SpectralShift, since: Duration)?

    public init(configuration: SimulatorConfiguration = .init(), clock: any Clock<Duration>, scene: any Scene = EmptyTable()) {
        self.configuration = configuration
        self.wallFloor = configuration.watchdogWallFloor
        self.clock = clock
        self.uptime = Stopwatch(clock)
        self.scene = scene
        self.detector = Detector(channels: Int(configuration.info.channels), pitchUm: Int(configuration.info.pitchUm), seed: configuration.seed,
                                 physics: configuration.physics)
        self.rng = SplitMix64(seed: configuration.seed &+ 77)
        self.shaper = LinkShaper(freedoms: configuration.freedoms)
        self.machine = DX1StateMachine(info: configuration.info)
    }

    // MARK: - Power and link

    /// Connects the firmware to a link and powers it on: BOOT, then IDLE after the boot time.
    public func powerOn(link: any DeviceSideLink) {
        self.link = link
        reboot()
    }

    private func reboot() {
        bootTask?.cancel()
        apply(machine.reboot())
        watchdogTask?.cancel()
        watchdogTask = nil
        uptime = Stopwatch(clock)
        lastXrayOn = nil; lastXrayOff = nil; expiries = []; exposures = []
        shaper.reset()
        heldEvents = nil
        bootLoaderOnBus = false
        eventSeq = 0
        dataSeq = 0
        decoder = FrameDecoder()
        log.append(at: uptime.elapsed, "boot: \(configuration.info.model) \(configuration.info.serial) fw \(configuration.info.firmware)")
        let bootTime = configuration.bootTime
        bootTask = Task { [weak self, clock] in
            do { try await clock.sleep(for: bootTime) } catch { return }
            await self?.finishBoot()
        }
    }

    private func finishBoot() {
        guard state == .boot else { return }
        if bootLoaderOnBus {
            // Leave the bus as the boot loader and come back running (a second enumeration).
            bootLoaderOnBus = false
            flushGathered()
            link?.disconnect(reason: "device re-enumerating after boot")
            plugged = false
            _ = machine.booted(announce: false)
            Task { [weak self, clock] in
                try? await clock.sleep(for: .milliseconds(100))
                await self?.replugAfterReset()
            }
            return
        }
        apply(machine.booted())
    }

    /// Bytes from the host on EP 0x01, as they arrive.
    public func receive(_ bytes: [UInt8]) {
        guard !frozen, plugged else { return }
        decoder.append(bytes)
        while let frame = decoder.next() {
            guard frame.kind == .command else { continue }
            let now = uptime.elapsed
            if xrayOn { exposureGap = max(exposureGap, now - lastHostFrame) }
            lastHostFrame = now
            lastHostFrameWall = .now
            handle(frame)
        }
    }

    // MARK: - Commands

    private func handle(_ frame: Frame) {
        commandsReceived += 1
        let opcodeEcho = Command.opcodeField(of: frame.payload) ?? 0
        let command: Command
        do {
            command = try Command(payload: frame.payload)
        } catch {
            record("seq \(frame.seq) op 0x\(String(opcodeEcho, radix: 16)) -> \(error.status)")
            respond(frame.seq, opcodeEcho, error.status)
            return
        }
        if command != .heartbeat { record("seq \(frame.seq) \(command.opcode)") }
        if configuration.freedoms.eventsAfterResponse { heldEvents = [] }
        var decision = machine.handle(command)
        if case .getStatus = command, configuration.freedoms.busyStatusWhileBusy, state == .moving || state == .scanning {
            // A freedom of the link, not of the rules: BUSY every other GET_STATUS while busy.
            busyStatusToggle.toggle()
            if busyStatusToggle { decision = DX1StateMachine.Decision(.busy) }
        }
        apply(decision.effects)
        let result = decision.status == .ok ? reply(decision.reply) : []
        if decision.status != .ok { record("seq \(frame.seq) \(command.opcode) -> \(decision.status)") }
        respond(frame.seq, command.opcode.rawValue, decision.status, result)
        if let held = heldEvents {
            heldEvents = nil
            for e in held { dispatchEvent(e.bytes, releasesData: e.releasesData) }
        }
        if decision.status == .ok { apply(decision.afterResponse) }
    }

    /// A command's result bytes.
    private func reply(_ r: DX1StateMachine.Reply) -> [UInt8] {
        switch r {
        case .none: []
        case .info: configuration.info.encoded
        case .status: status.encoded
        case .selfTest: selfTest().encoded
        case .sensors: sensors.encoded
        case let .log(offset, maxBytes): log.chunk(from: offset, max: Int(maxBytes)).encoded
        }
    }

    /// Carries out what the state machine says, in order.
    private func apply(_ effects: [DX1StateMachine.Effect]) {
        for e in effects {
            switch e {
            case .event(let event): send(event)
            case let .xray(on, scanID): xrayChanged(on, scanID: scanID)
            case let .startMotion(target, seconds):
                let gen = generation
                motionTask = Task { [weak self, clock] in
                    do { try await clock.sleep(for: .nanoseconds(Int64(seconds * 1e9))) } catch { return }
                    await self?.finishMotion(target, generation: gen)
                }
            case .cancelMotion:
                generation += 1
                motionTask?.cancel()
                motionTask = nil
            case .startScan(let c):
                generation += 1
                let gen = generation
                let start = uptime.elapsed
                scanTask = Task { [weak self] in await self?.runScan(c, generation: gen, start: start) }
            case .cancelScan:
                generation += 1
                scanTask?.cancel()
                scanTask = nil
            case .announceScanStarted(let id):
                guard activeScan?.scanID == id else { continue }
                send(.scanStarted(scanID: id, deviceTimeUs: deviceTimeUs(uptime.elapsed)))
            case let .announceScanAborted(id, reason):
                send(.scanAborted(scanID: id, reason: reason, linesSent: UInt32(clamping: max(0, dataSeqLinesSent))))
            case .reset: performReset()
            case .log(let line): log.append(at: uptime.elapsed, line)
            }
        }
    }

    private func record(_ line: String) {
        commandLog.append(line)
        if commandLog.count > 200 { commandLog.removeFirst(commandLog.count - 200) }
    }

    /// RESET, after its response: off the bus, a new boot, back after the absence.
    private func performReset() {
        var absence = configuration.resetAbsence
        flushGathered()
        link?.disconnect(reason: "device reset")
        reboot()
        plugged = false
        if configuration.freedoms.reenumeratesAfterBoot {
            // Back at once with the boot loader, which stays for a second.
            absence = .milliseconds(50)
            bootLoaderOnBus = true
            bootTask?.cancel()
            bootTask = Task { [weak self, clock] in
                do { try await clock.sleep(for: .milliseconds(1000)) } catch { return }
                await self?.finishBoot()
            }
        }
        Task { [weak self, clock] in
            try? await clock.sleep(for: absence)
            await self?.replugAfterReset()
        }
    }

    private func replugAfterReset() {
        plugged = true
        link?.reconnect()
    }

    private var status: DeviceStatus {
        DeviceStatus(
            state: state, interlocks: interlocks, xrayOn: xrayOn,
            tubeTempX10: Int16(tubeTemp.rounded()), detectorTempX10: 251,
            kvX10: xrayOn ? 1000 : 0, tubeCurrentUA: xrayOn ? (activeScan?.tubeCurrentUA ?? 0) : 0,
            armAngleX10: arm, xUm: x, yUm: y, fault: fault, activeScanID: activeScan?.scanID ?? 0)
    }

    private var sensors: SensorReadings {
        SensorReadings(
            tubeTempX10: Int16(tubeTemp.rounded()), detectorTempX10: 251, generatorTempX10: 356,
            kvX10: xrayOn ? 1000 : 0, tubeCurrentUA: xrayOn ? (activeScan?.tubeCurrentUA ?? 0) : 0,
            supplyMv: 24_050, darkMean: UInt16(detector.meanDark.rounded()),
            uptimeS: UInt32(clamping: uptime.elapsed.components.seconds),
            droppedLines: droppedLines, usbErrors: UInt32(clamping: decoder.errors.resyncs))
    }

    private func selfTest() -> SelfTestReport {
        let checks: [(SelfTestComponent, Int32)] = [
            (.generator, 1000), (.tube, Int32(tubeTemp)), (.detector, Int32(detector.meanDark)), (.xDrive, Int32(x)), (.yDrive, Int32(y)),
            (.armRotation, Int32(arm)), (.interlockChain, Int32(interlocks.rawValue)), (.memory, 0), (.clock, 0),
        ]
        let items = checks.map { (comp, v) -> SelfTestItem in
            // A failed item's code is 0x100 plus the component (the simulator's choice: the
            // ICD leaves failure codes to the firmware; docs/ICD-NOTES.md).
            if failedSelfTest.contains(comp) { return SelfTestItem(component: comp, result: .fail, value: v, code: 0x100 + UInt16(comp.rawValue)) }
            if comp == .interlockChain && interlocks != .allClosed {
                // The code names the open interlocks, one bit each (ICD §4's interlock bits).
                return SelfTestItem(component: comp, result: .warn, value: v, code: Interlocks.allClosed.subtracting(interlocks).rawValue)
            }
            return SelfTestItem(component: comp, result: .pass, value: v, code: 0)
        }
        log.append(at: uptime.elapsed, "self-test: \(items.filter { $0.result != .pass }.count) items not passed")
        return SelfTestReport(items: items)
    }

    // MARK: - Motion (ICD §3: 50 mm/s per axis, 90° in 5 s)

    private func finishMotion(_ target: DX1StateMachine.Position, generation gen: Int) {
        guard gen == generation else { return }
        apply(machine.motionFinished(at: target))
    }

    // MARK: - Scans

    private func runScan(_ c: ScanConfiguration, generation gen: Int, start: Duration) async {
        let period = Duration.microseconds(Int64(c.linePeriodUs))
        var timebase = start       // moves forward with stalls
        var line = 0
        let total = Int(c.lineCount)
        var exposure = Duration.zero
        // The spectrum is fixed for a scan: a drift moves it between scans, as a comparator
        // reference drifting over days would.
        let drift = spectrumDrift.map { $0.perDay * ((uptime.elapsed - $0.since).milliseconds / 86_400_000) } ?? SpectralShift()
        detector.shiftSpectrum(to: spectrumStep + drift)
        while line < total {
            let k = min(Int(c.linesPerFrame), total - line)
            let linePeriod = period.scaled(by: lineRateFactor)
            let frameEnd = timebase + linePeriod * k
            do {
                try await clock.sleep(untilElapsed: frameEnd, on: uptime)
                while let until = stallUntil, until > uptime.elapsed {
                    try await clock.sleep(untilElapsed: until, on: uptime)
                }
            } catch { return }
            guard gen == generation, state == .scanning, activeScan?.scanID == c.scanID else { return }
            if frozen { timebase = uptime.elapsed; continue }
            if let until = stallUntil {
                // The lines resume after the stall: shift the timebase by it.
                if until > frameEnd { timebase = until - linePeriod * k }
                stallUntil = nil
                continue
            }
            // Reading out the detector is the heavy part: do it off the actor, the way the
            // real unit's readout runs beside its command processor, so host frames (and the
            // watchdog's view of them) are never held up behind it.
            let batch = LineBatch(mode: c.mode, xUm: c.xUm, firstLine: line, count: k, timebase: timebase, linePeriod: linePeriod,
                                  config: c, xrayOn: xrayOn, outputFactor: configuration.tubeOutput(afterUptime: uptime.elapsed) * (1 + outputStep))
            let (lines, readout) = await readoutThread.run { [detector, scene, arm, deviceTimeUs] in
                Self.readOut(batch, detector: detector, scene: scene.projection(armAngleX10: arm), time: deviceTimeUs)
            }
            detector = readout
            guard gen == generation, state == .scanning, activeScan?.scanID == c.scanID else { return }
            machine.carriage(xUm: c.xUm, yUm: lines.last?.yUm ?? y)
            sendData(DataFrame(scanID: c.scanID, firstLine: UInt32(line), channels: configuration.info.channels, lines: lines),
                     lastOfScan: line + k == total)
            if xrayOn { exposure += linePeriod * k; tubeTemp = min(tubeTemp + 0.02 * Double(k), 650) }
            line += k
            timebase = frameEnd
        }
        guard gen == generation, state == .scanning else { return }
        let exposureMs = c.mode == .dark ? 0 : UInt32(clamping: Int64(exposure.milliseconds.rounded()))
        let dap = dapX1000(currentUA: c.tubeCurrentUA, exposureMs: exposureMs)
        apply(machine.scanFinished(lines: UInt32(total), exposureMs: exposureMs, dapX1000: dap))
    }

    struct LineBatch: Sendable {
        var mode: ScanMode
        var xUm: Int32
        var firstLine: Int
        var count: Int
        var timebase: Duration
        var linePeriod: Duration
        var config: ScanConfiguration
        var xrayOn: Bool
        var outputFactor: Double
    }

    private static func readOut(_ b: LineBatch, detector: Detector, scene: any Scene,
                                time: @Sendable (Duration) -> UInt64) -> ([ScanLine], Detector) {
        var detector = detector
        var lines: [ScanLine] = []
        lines.reserveCapacity(b.count)
        for j in 0..<b.count {
            let i = b.firstLine + j
            let mid = b.timebase + b.linePeriod * j + b.linePeriod / 2
            let yy = Int32(clamping: b.config.yUm(ofLine: Int64(i)))
            let read = detector.readLine(mode: b.mode, xUm: b.xUm, yUm: yy, periodUs: b.config.linePeriodUs,
                                         currentUA: b.config.tubeCurrentUA, outputFactor: b.outputFactor, scene: scene)
            var flags: LineFlags = b.xrayOn ? [.xrayOn] : []
            if read.saturated { flags.insert(.saturated) }
            lines.append(ScanLine(index: UInt32(i), yUm: yy, xUm: b.xUm, tUs: time(mid), flags: flags, samples: read.samples))
        }
        return (lines, detector)
    }

    private func dapX1000(currentUA: UInt32, exposureMs: UInt32) -> UInt32 {
        let widthCm = Double(configuration.info.channels) * Double(configuration.info.pitchUm) / 10_000
        let mGyCm2 = configuration.kermaRateMGyPerSecondPerMA * Double(currentUA) / 1000
            * Double(exposureMs) / 1000 * widthCm * configuration.fanThicknessCm
        return UInt32(clamping: Int64((mGyCm2 * 1000).rounded()))
    }

    /// Lines sent in the current scan (tracked as data frames go out).
    private var dataSeqLinesSent: Int = 0

    /// The firmware's records of an X-ray change the state machine made.
    private func xrayChanged(_ on: Bool, scanID: UInt32?) {
        let now = uptime.elapsed
        if on {
            lastXrayOn = now
            exposureGap = .zero
            dataSeqLinesSent = 0
            watchdogTask?.cancel()
            watchdogTask = Task { [weak self] in await self?.watchdog() }
        } else {
            lastXrayOff = now
            exposureGap = max(exposureGap, now - lastHostFrame)
            exposures.append(.init(scanID: scanID ?? 0, xrayOnMs: (lastXrayOn ?? now).milliseconds,
                                   xrayOffMs: now.milliseconds, longestHostGapMs: exposureGap.milliseconds))
            if exposures.count > 200 { exposures.removeFirst() }
            watchdogTask?.cancel()
            watchdogTask = nil
        }
        log.append(at: now, on ? "X-ray ON" : "X-ray OFF")
    }

    private var forgivenFrame: Duration?
    /// The watchdog's test-speed wall floor now (`configuration.watchdogWallFloor` at boot;
    /// `watchdog-floor MS` changes it: a fault test lifts it while the host is dead, so that
    /// the ICD's rule holds on the device clock).
    private var wallFloor: Duration?

    /// ICD §4: while X-rays are on, more than watchdog_ms without a host frame turns them off.
    private func watchdog() async {
        let limit = Duration.milliseconds(Int64(configuration.info.watchdogMs))
        while xrayOn {
            let deadline = lastHostFrame + limit + .microseconds(500)
            do { try await clock.sleep(untilElapsed: deadline, on: uptime) } catch { return }
            guard xrayOn else { return }
            if uptime.elapsed - lastHostFrame > limit {
                if let floor = wallFloor {
                    let wallGap = ContinuousClock.now - lastHostFrameWall
                    if wallGap < floor {
                        // Test speed: the host is late on device time but not on the wall's.
                        if forgivenFrame != lastHostFrame { watchdogForgiven += 1; forgivenFrame = lastHostFrame }
                        do { try await ContinuousClock().sleep(for: floor - wallGap) } catch { return }
                        continue
                    }
                }
                let last = lastHostFrame
                apply(machine.watchdogExpired(eventFirst: configuration.freedoms.watchdogEventFirst))
                expiries.append(.init(lastHostFrameMs: last.milliseconds, xrayOffMs: (lastXrayOff ?? uptime.elapsed).milliseconds))
                log.append(at: uptime.elapsed, "WATCHDOG expired: last host frame \(Int(last.milliseconds)) ms")
                return
            }
        }
    }

    // MARK: - Output

    private nonisolated func deviceTimeUs(_ t: Duration) -> UInt64 { t.microseconds }

    private func respond(_ seq: UInt32, _ opcode: UInt16, _ status: CommandStatus, _ result: [UInt8] = []) {
        guard let bytes = try? Frame(kind: .response, seq: seq, payload: Response(opcode: opcode, status: status, result: result).payload).encoded()
        else { return }
        transmit(.responseIn, bytes)
    }

    private func send(_ event: Event) {
        eventSeq &+= 1
        guard let bytes = try? Frame(kind: .event, seq: eventSeq, payload: event.payload).encoded() else { return }
        var completes = false
        if case .scanComplete = event { completes = true }
        if heldEvents != nil {
            heldEvents?.append((bytes, completes))
        } else {
            dispatchEvent(bytes, releasesData: completes)
        }
    }

    /// Sends an event now or, with lagging events, when its turn comes (events keep their order).
    private func dispatchEvent(_ bytes: [UInt8], releasesData: Bool) {
        let now = uptime.elapsed
        let at = shaper.eventReleaseTime(now: now)
        if at <= now && shaper.nextEventRelease == nil {
            transmitEvent(bytes, releasesData: releasesData)
            return
        }
        shaper.queueEvent(bytes, releaseAt: at, releasesData: releasesData)
        Task { [weak self, clock, uptime] in
            try? await clock.sleep(untilElapsed: at, on: uptime)
            await self?.releaseEvents()
        }
    }

    private func releaseEvents() {
        for e in shaper.dueEvents(now: uptime.elapsed) { transmitEvent(e.bytes, releasesData: e.releasesData) }
        // A sleep that woke a hair early leaves its event queued: come back for it.
        if let next = shaper.nextEventRelease {
            Task { [weak self, clock, uptime] in
                try? await clock.sleep(untilElapsed: next, on: uptime)
                await self?.releaseEvents()
            }
        }
    }

    private func transmitEvent(_ bytes: [UInt8], releasesData: Bool) {
        transmit(.responseIn, bytes)
        // A scan's last data frame, held back, follows its SCAN_COMPLETE.
        if releasesData, let data = shaper.takeHeldData() { transmit(.dataIn, data) }
    }

    private func sendData(_ frame: DataFrame, lastOfScan: Bool) {
        dataSeq &+= 1
        dataSeqLinesSent += frame.lines.count
        if dropData > 0 || (configuration.freedoms.loseFirstDataFrame && dataSeq == 1) {
            dropData = max(0, dropData - 1)
            droppedLines &+= UInt32(frame.lines.count)
            dataFramesLost += 1
            dataLinesLost += frame.lines.count
            return
        }
        guard let bytes = try? Frame(kind: .data, seq: dataSeq, payload: frame.payload).encoded() else { return }
        if lastOfScan && configuration.freedoms.completeBeforeLastData {
            shaper.holdData(bytes)
        } else {
            transmit(.dataIn, bytes)
        }
    }

    /// One frame's bytes onto an IN endpoint: injected faults first, then the link's shape
    /// (garbage between frames, frames gathered into records, records split).
    private func transmit(_ endpoint: Endpoint, _ frameBytes: [UInt8]) {
        guard !frozen, plugged else { return }
        var bytes = frameBytes
        if let n = garbage[endpoint], n > 0 {
            garbage[endpoint] = 0
            let junk = (0..<n).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            bytes = junk + bytes
        }
        if let n = corrupt[endpoint], n > 0 {
            corrupt[endpoint] = n - 1
            let i = Int(rng.next() % UInt64(bytes.count))
            bytes[i] ^= UInt8(1 << (rng.next() % 8))
        }
        bytes = shaper.garbage() + bytes
        guard configuration.freedoms.coalesceFrames else { output(endpoint, bytes); return }
        if shaper.gather(endpoint, bytes) {
            let delay = shaper.gatherDelay()
            Task { [weak self, clock] in
                try? await clock.sleep(for: delay)
                await self?.flushGathered(endpoint)
            }
        }
    }

    private func flushGathered(_ endpoint: Endpoint) {
        let bytes = shaper.takeGathered(endpoint)
        guard !bytes.isEmpty, !frozen, plugged else { return }
        output(endpoint, bytes)
    }

    private func flushGathered() {
        for e in shaper.gatheredEndpoints { flushGathered(e) }
    }

    private func output(_ endpoint: Endpoint, _ bytes: [UInt8]) {
        for record in shaper.records(bytes) { link?.emit(endpoint, record) }
    }

    // MARK: - Fault injection

    public func inject(_ f: InjectedFault) {
        log.append(at: uptime.elapsed, "injected: \(f)")
        switch f {
        case let .interlock(which, closed):
            apply(machine.interlock(which, closed: closed))
        case let .trip(code, message):
            // X-rays off first, then say why, then end the scan: the host learns the cause
            // before the abort it explains.
            apply(machine.trip(code, message: message))
        case let .stallData(d):
            stallUntil = uptime.elapsed + d
        case let .dropDataFrames(n):
            dropData += n
        case let .corruptFrames(ep, n):
            corrupt[ep, default: 0] += n
        case let .garbage(ep, n):
            garbage[ep, default: 0] += n
        case .freeze:
            frozen = true
        case .thaw:
            frozen = false
        case .unplug:
            plugged = false
            // What was on its way to the host is lost with the cable.
            shaper.reset()
            link?.disconnect(reason: "cable unplugged")
        case .plug:
            plugged = true
            link?.reconnect()
        case let .lineRateFactor(f):
            lineRateFactor = f
        case let .failSelfTest(c):
            failedSelfTest.insert(c)
        case let .outputStep(f):
            outputStep = f
        case let .spectrumStep(s):
            spectrumStep = spectrumStep + s
        case let .spectrumDrift(perDay):
            // From now, on the device's clock; what drifted so far stays as a step.
            if let d = spectrumDrift { spectrumStep = spectrumStep + d.perDay * ((uptime.elapsed - d.since).milliseconds / 86_400_000) }
            spectrumDrift = (perDay, uptime.elapsed)
        case .watchdogFloor(let floor):
            wallFloor = floor
        case .clearInjected:
            outputStep = 0
            spectrumStep = SpectralShift()
            spectrumDrift = nil
            frozen = false
            stallUntil = nil
            lineRateFactor = 1
            failedSelfTest = []
            dropData = 0
            corrupt = [:]
            garbage = [:]
        }
    }

    public func setScene(_ s: any Scene) { scene = s }

    /// Test speed only: the unit's clock runs `speed` times faster than real time from now
    /// (a `ScaledClock`; any other clock refuses). Time stays continuous.
    public func setSpeed(_ speed: Double) -> Bool { (clock as? ScaledClock)?.setSpeed(speed) ?? false }

    public var snapshot: SimulatorSnapshot {
        SimulatorSnapshot(
            state: state, xrayOn: xrayOn, interlocks: interlocks.rawValue, fault: fault.rawValue,
            xUm: x, yUm: y, armAngle: arm, activeScanID: activeScan?.scanID ?? 0,
            dataFramesSent: dataSeq, eventsSent: eventSeq, commandsReceived: commandsReceived,
            frameErrors: decoder.errors.resyncs,
            lastHostFrameMs: commandsReceived > 0 ? lastHostFrame.milliseconds : nil,
            lastXrayOnMs: lastXrayOn?.milliseconds, lastXrayOffMs: lastXrayOff?.milliseconds,
            watchdogExpiries: expiries, exposures: exposures, watchdogForgiven: watchdogForgiven,
            dataFramesLost: dataFramesLost, dataLinesLost: dataLinesLost, freedoms: configuration.freedoms.description,
            commandLog: commandLog, uptimeMs: uptime.elapsed.milliseconds,
            frozen: frozen, plugged: plugged)
    }
}

/// The firmware's text log, read by GET_LOG with byte offsets. Old text is dropped past
/// 64 KiB; offsets stay absolute so a reader can tell it missed some.
struct FirmwareLog: Sendable {
    private var text: [UInt8] = []
    private var base: UInt32 = 0
    private let capacity = 65_536

    mutating func append(at t: Duration, _ line: String) {
        let ms = Int(t.milliseconds)
        let safe = line.unicodeScalars.map { $0.isASCII ? Character($0) : "?" }
        text.append(contentsOf: Array("[\(ms / 1000).\(String(format3(ms % 1000)))] \(String(safe))\n".utf8))
        if text.count > capacity {
            let cut = text.count - capacity
            text.removeFirst(cut)
            base &+= UInt32(cut)
        }
    }

    func chunk(from offset: UInt32, max: Int) -> LogChunk {
        let start = offset < base ? 0 : Int(offset - base)
        guard start < text.count else { return LogChunk(nextOffset: base &+ UInt32(text.count), text: "") }
        let end = min(text.count, start + max)
        return LogChunk(nextOffset: base &+ UInt32(end), text: String(decoding: text[start..<end], as: UTF8.self))
    }

    private func format3(_ v: Int) -> String {
        let s = String(v)
        return String(repeating: "0", count: max(0, 3 - s.count)) + s
    }
}

/// A serial queue for the detector's readout, off Swift's cooperative pool.
final class ReadoutThread: Sendable {
    private let queue = DispatchQueue(label: "dexa-sim.readout", qos: .utility)

    func run<T: Sendable>(_ work: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { c in queue.async { c.resume(returning: work()) } }
    }
}
