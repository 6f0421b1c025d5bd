import DXProtocol
import DXSimulator
import DXTransport
import Testing

/// A bare host on the simulator's link: sends frames, reads what comes back.
actor RawHost {
    let sim: EmbeddedSimulator
    private var pump: Task<Void, Never>?
    private var ended = false
    private var decoder = FrameDecoder()
    private var seq: UInt32 = 0
    private var backlog: [Frame] = []
    let runTask: Task<Void, Never>

    init(speed: Double = 50) async throws {
        let sim = EmbeddedSimulator(clock: ScaledClock(speed: speed))
        self.sim = sim
        runTask = Task { await sim.run() }
        let stream = try await sim.transport.open()
        pump = Task { [weak self] in
            do { for try await chunk in stream { await self?.ingest(chunk) } } catch {}
            await self?.end()
        }
    }

    private func ingest(_ chunk: TransportChunk) { if chunk.endpoint == .responseIn { decoder.append(chunk.bytes) } }
    private func end() { ended = true }

    func sendRaw(_ bytes: [UInt8]) async throws { try await sim.transport.send(bytes) }

    /// Sends a command payload and returns its response.
    func command(_ payload: [UInt8]) async throws -> Response {
        seq += 1
        let mine = seq
        try await sim.transport.send(Frame(kind: .command, seq: mine, payload: payload).encoded())
        while true {
            let f = try await nextFrame()
            if f.kind == .response && f.seq == mine { return try Response(payload: f.payload) }
            if f.kind == .event { backlog.append(f) }
        }
    }

    func command(_ c: Command) async throws -> Response { try await command(c.payload) }

    func nextFrame() async throws -> Frame {
        while true {
            if let f = decoder.next() { return f }
            if ended { throw TransportError.disconnected("end") }
            try await Task.sleep(for: .milliseconds(1))
        }
    }

    func waitForState(_ s: DeviceState) async throws {
        for _ in 0..<200 {
            let st = try DeviceStatus(decoding: try await command(.getStatus).result)
            if st.state == s { return }
            try await Task.sleep(for: .milliseconds(5))
        }
        Issue.record("device never reached \(s)")
    }

    func stop() { sim.shutdown(); runTask.cancel(); pump?.cancel() }
}

@Suite("Simulated firmware follows the ICD")
struct FirmwareTests {
    static func config(_ edit: (inout ScanConfiguration) -> Void = { _ in }) -> Command {
        var c = ScanConfiguration(scanID: 9, mode: .dual, xUm: 200_000, yStartUm: 0, lineCount: 50, lineStepUm: 1000,
                                  linePeriodUs: 10_000, tubeCurrentUA: 1000, linesPerFrame: 8)
        edit(&c)
        return .configureScan(c)
    }

    @Test func statusCodesForBadCommands() async throws {
        let host = try await RawHost()
        defer { Task { await host.stop() } }
        try await host.waitForState(.idle)
        #expect(try await host.command([0x99, 0x99]).status == .unknownOpcode)
        #expect(try await host.command(Command.getInfo.payload + [1]).status == .malformed)
        #expect(try await host.command([0x11, 0x00, 1, 2]).status == .malformed)
        #expect(try await host.command(Self.config { $0.scanID = 0 }).status == .badParams)
        #expect(try await host.command(Self.config { $0.linesPerFrame = 65 }).status == .badParams)
        #expect(try await host.command(Self.config { $0.tubeCurrentUA = 3001 }).status == .badParams)
        #expect(try await host.command(Self.config { $0.linePeriodUs = 9_000 }).status == .badParams)
        #expect(try await host.command(.startScan(scanID: 9)).status == .badState)
        #expect(try await host.command(.clearFault).status == .badState)
        #expect(try await host.command(.move(xUm: -1, yUm: 0, armAngle: 0)).status == .badParams)
        #expect(try await host.command(Self.config()).status == .ok)
        #expect(try await host.command(.startScan(scanID: 8)).status == .badParams)
        #expect(try await host.command(.home).status == .badState)
        await host.sim.inject(.interlock(.roomDoorClosed, closed: false))
        #expect(try await host.command(.startScan(scanID: 9)).status == .interlockOpen)
        await host.sim.inject(.interlock(.roomDoorClosed, closed: true))
        await host.sim.inject(.trip(.overTemperature, message: "tube hot"))
        #expect(try await host.command(.home).status == .faultActive)
        #expect(try await host.command(.xrayOff).status == .ok)
        #expect(try await host.command(.clearFault).status == .ok)
        try await host.waitForState(.idle)
    }

    @Test func corruptHostBytesAreCountedAndIgnored() async throws {
        let host = try await RawHost()
        defer { Task { await host.stop() } }
        try await host.sendRaw([0x44, 0x58, 0x01, 0x01, 0xFF, 0xFF, 0xFF, 0xFF] + Array(repeating: 0xAB, count: 100))
        var bad = try Frame(kind: .command, seq: 77, payload: Command.home.payload).encoded()
        bad[13] ^= 0x10
        try await host.sendRaw(bad)
        #expect(try await host.command(.getInfo).status == .ok)
        let snap = await host.sim.firmware.snapshot
        #expect(snap.frameErrors >= 1)
        #expect(!snap.commandLog.contains { $0.contains("HOME") })
    }

    @Test func faultCommandsParseOrExplain() throws {
        #expect(try FaultCommand.parse("interlock door open") == .interlock(.roomDoorClosed, closed: false))
        #expect(try FaultCommand.parse("fault 2") == .trip(.overTemperature, message: "over-temperature"))
        #expect(try FaultCommand.parse("corrupt data 3") == .corruptFrames(.dataIn, 3))
        #expect(try FaultCommand.parse("stall 1500") == .stallData(.milliseconds(1500)))
        #expect(try FaultCommand.parse("spectrum high 0.3") == .spectrumStep(SpectralShift(highThresholdKeV: 0.3)))
        #expect(try FaultCommand.parse("spectrum-drift kvp -0.15") == .spectrumDrift(SpectralShift(kVp: -0.15)))
        #expect(try FaultCommand.parse("spectrum low 1") == .spectrumStep(SpectralShift(lowThresholdKeV: 1)))
        #expect(try FaultCommand.parse("output -10") == .outputStep(-0.1))
        #expect(try FaultCommand.parse("watchdog-floor 0") == .watchdogFloor(nil))
        #expect(try FaultCommand.parse("watchdog-floor 500") == .watchdogFloor(.milliseconds(500)))
        for bad in ["watchdog-floor", "watchdog-floor -1", "watchdog-floor 60001", "watchdog-floor soon", "", "interlock", "interlock window open", "fault 0", "fault -1", "drop many", "rate 0", "rate nan", "corrupt usb 1", "explode",
                    "spectrum", "spectrum high", "spectrum mid 1", "spectrum high nan", "spectrum kvp 11", "spectrum-drift low inf", "output",
                    "output 60", "output ten", "spectrum high 1 2"] {
            #expect(throws: FaultCommand.ParseError.self, "\(bad)") { try FaultCommand.parse(bad) }
        }
    }

    /// The control language's test-speed commands: the unit's clock changes speed on
    /// `speed`, and nonsense is refused with nothing changed.
    @Test func speedChangesTheUnitsClockAndRefusesNonsense() async throws {
        let clock = ScaledClock(speed: 50)
        let firmware = DX1Firmware(clock: clock)
        for bad in ["speed 0", "speed -3", "speed nan", "speed fast", "speed 20000"] {
            #expect(await SimulatorControl.reply(to: bad, firmware: firmware).hasPrefix("error:"), "\(bad)")
        }
        #expect(clock.speed == 50)
        #expect(await SimulatorControl.reply(to: "speed 1", firmware: firmware) == "ok")
        #expect(clock.speed == 1)
        #expect(await SimulatorControl.reply(to: "watchdog-floor 0", firmware: firmware) == "ok")
        // A unit on a clock that cannot change speed says so.
        let fixed = DX1Firmware(clock: ContinuousClock())
        #expect(await SimulatorControl.reply(to: "speed 2", firmware: fixed).hasPrefix("error:"))
    }

    /// A spectrum step moves the counts the way the physics says, and back to none restores the
    /// detector's own physics exactly (the same samples from the same noise).
    @Test(arguments: PhysicsModel.allCases)
    func aSpectrumShiftChangesTheCountsAndComesBack(physics: PhysicsModel) {
        let scene = PhantomScene(StandardPhantoms.esp)
        func line(_ d: inout Detector) -> [UInt16] {
            d.reseedNoise(5)
            return d.readLine(mode: .dual, xUm: 200_000, yUm: 600_000, periodUs: 10_000, currentUA: 1000, outputFactor: 1, scene: scene).samples
        }
        var d = Detector(channels: 144, pitchUm: 1000, seed: 3, physics: physics)
        let before = line(&d)
        // The edge between the windows 2 keV up: photons move from the high window to the low.
        d.shiftSpectrum(to: SpectralShift(highThresholdKeV: 2))
        let shifted = line(&d)
        let sum = { (s: [UInt16], w: Int) in stride(from: w, to: s.count, by: 2).reduce(0.0) { $0 + Double(s[$1]) } }
        #expect(sum(shifted, 0) > sum(before, 0) * 1.01 && sum(shifted, 1) < sum(before, 1) * 0.99,
                "low \(sum(before, 0)) → \(sum(shifted, 0)), high \(sum(before, 1)) → \(sum(shifted, 1))")
        d.shiftSpectrum(to: SpectralShift())
        #expect(line(&d) == before)
    }
}
