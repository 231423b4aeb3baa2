from hook_processor.cli import main

main()
