import DXCommandLine

@main
struct Main {
    static func main() async { await DexaCommand.main() }
}
