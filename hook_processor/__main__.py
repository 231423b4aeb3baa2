from hook_processor._console import main

main()
